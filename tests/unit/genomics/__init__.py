"""Unit tests of the genomics example tools (pure logic, no files)."""
