"""The genomics example: a variant-calling pipeline with its tools, data generator and demo."""
