"""Stream pipelines: items flow through stages one queue message per item and stage, on worker fleets.

Pure core, shared by the local fleet (chalicelib/local/fleet.py) and, later, ECS workers:
the stream spec (settings.py, rules.py), the message (messages.py), the scaling decision
(scaling.py), the poison-message rule (poison.py), per-item records and events (records.py)
and the worker loop (worker.py). The queue is any object with boto3's SQS client methods.
"""
