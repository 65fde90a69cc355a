"""Stage tools of the genomics example; each is `python -m tools.<stage>` with examples/genomics on PYTHONPATH."""
