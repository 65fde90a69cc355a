"""`conveyor` commands; parses arguments, calls the core or the engine, renders output.

Each command family lives in its own module under ``chalicelib.commands`` and
registers its sub-commands here, so this file stays a table of contents.
"""

from __future__ import annotations

import os
import signal
import sys


def _quit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(130)


if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "conveyor":
    # Ctrl-C while the modules below load: nothing has started, so leave without a traceback.
    signal.signal(signal.SIGINT, _quit_quietly)

import argparse  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from chalicelib import __version__  # noqa: E402
from chalicelib.commands import cancel as cancel_cmds  # noqa: E402
from chalicelib.commands import engine as engine_cmds  # noqa: E402
from chalicelib.commands import pipeline as pipeline_cmds  # noqa: E402
from chalicelib.localbatch.storage.folder_lock import FolderInUseError  # noqa: E402
from chalicelib.localbatch.storage.store import StoreError  # noqa: E402
from chalicelib.pipeline.errors import PipelineError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conveyor",
        description="Run container batch pipelines with AWS Batch semantics.",
    )
    parser.add_argument("--version", action="version", version=f"conveyor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    engine_cmds.register(commands)
    pipeline_cmds.register(commands)
    cancel_cmds.register(commands, engine_cmds.default_data_dir())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if signal.getsignal(signal.SIGINT) is _quit_quietly:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # commands handle Ctrl-C from here
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except FolderInUseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StoreError as err:  # an engine data dir that cannot be opened, from any command
        print(f"error: {err}", file=sys.stderr)
        return 2
    except PipelineError as err:  # e.g. an engine that does not answer DescribeJobQueues
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
