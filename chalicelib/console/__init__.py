"""The local console: a browser view of the engine and its pipeline runs, served by `conveyor serve` at /console.

It sits outside the engine (which knows nothing of pipelines) and is mounted on the engine's
HTTP server by the composition root (`commands/engine.py`, `commands/runs.py`). It reads the
run store and the engine, and changes things only through the calls the CLI makes.
"""
