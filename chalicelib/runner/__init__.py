"""In-container data stager: stages inputs in, runs the tool, publishes outputs on success.

The job command of every stage is::

    python -m chalicelib.runner --run-prefix URI --stage NAME
        [--manifest URI] [--offset K]
        [--join [--items URI]]
        [--upstream NAME=foreach|join ...]
        [--scratch DIR] [--keep-scratch]
        -- TOOL ARGV...

Build it with ``chalicelib.pipeline.invocation.build_runner_argv``. The runner

1. finds its item: ``offset + AWS_BATCH_JOB_ARRAY_INDEX`` (0 for a plain job)
   in the manifest (default ``<run-prefix>/manifest.json``); a ``--join``
   takes every item of ``--items`` (the tracker's list of succeeded items for
   an ``allow_failed_items`` join) or of the manifest;
2. stages the files the command names: the item's (``{item}``) and the upstream
   outputs (``{<stage>}``), into a fresh scratch folder (the job's working folder
   when it is empty, else a new folder under ``--scratch`` or the current folder),
   which is also the tool's working folder;
3. substitutes ``{item}``, ``{key}``, ``{out}`` and ``{<stage>}`` (rules in
   ``chalicelib.pipeline.placeholders``: a whole-argument placeholder becomes
   separate arguments, one inside a longer argument is space-joined);
4. runs the tool without a shell, its stdout/stderr going straight to the
   job's log;
5. only if the tool exits 0, publishes ``{out}`` to
   ``<run-prefix>/<stage>/<item key>/`` (a join: ``<run-prefix>/<stage>/``),
   ending with a ``_SUCCESS`` marker; readers need the marker, so a retried
   attempt never sees a failed attempt's half-written outputs.

Exit codes are listed in ``chalicelib.runner.main``.
"""
