"""Integration tests of the genomics example: simulated data through the real tools."""
