"""The engine's SQS: the JSON 1.0 protocol boto3 speaks, durable in its own SQLite file.

    service = SqsService(data_dir / "sqs.sqlite3")
    result = service.call("SendMessage", body, base_url)   # raises SqsError for a client's mistake

Served by rest.py on the same port as the Batch API (POST with ``X-Amz-Target: AmazonSQS.<Op>``).
"""
