"""In-container data stager: stages inputs in, runs the tool, publishes outputs on success."""
