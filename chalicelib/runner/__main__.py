"""Entry point: ``python -m chalicelib.runner`` (arguments in ``chalicelib.pipeline.invocation``)."""

from __future__ import annotations

import sys

from chalicelib.runner.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
