"""localbatch: AWS Batch on one machine (SQLite state, local processes, the Batch REST API)."""
