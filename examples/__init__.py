"""Example pipelines that ship with Conveyor; the genomics one first."""
