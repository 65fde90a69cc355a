"""Conveyor: container batch pipelines with AWS Batch semantics, local and on AWS."""

__version__ = "0.1.0"
