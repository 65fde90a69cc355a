"""Runs inside a fresh interpreter (``python -I -S``) whose path is the unpacked Lambda bundle and the
libraries the Lambda Python runtime provides; nothing else of this repository or its venv.

argv: <bundle dir> <runtime libs dir> <plan.json>. The plan names every handler (as the
template's ``Handler``) and the invocations to make. Prints one JSON document: each import's
outcome, each invocation's result or error, and any module loaded from outside the two
folders and the standard library.
"""

import importlib
import json
import sys
import sysconfig
import traceback

bundle, runtime, plan_path = sys.argv[1:4]
sys.path[:0] = [bundle, runtime]
with open(plan_path) as handle:
    plan = json.load(handle)


class Context:
    """The attributes of the Lambda context object that handlers and powertools read."""

    def __init__(self, handler):
        self.function_name = handler.rsplit(".", 1)[-1]
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = "6f1b2c3d-0000-4000-8000-000000000000"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "2026/12/07/[$LATEST]0"

    def get_remaining_time_in_millis(self):
        return 300000


def _resolve(handler):
    module, _, name = handler.rpartition(".")
    return getattr(importlib.import_module(module), name)


report = {"imports": {}, "calls": [], "outside": []}
for handler in plan["handlers"]:
    try:
        _resolve(handler)
        report["imports"][handler] = "ok"
    except Exception as err:  # the report names it; the test fails on it
        report["imports"][handler] = f"{type(err).__name__}: {err}"
for call in plan["invocations"]:
    entry = {"name": call["name"]}
    try:
        entry["result"] = _resolve(call["handler"])(call["event"], Context(call["handler"]))
    except Exception as err:
        entry["error"] = f"{type(err).__name__}: {err}\n{traceback.format_exc()[-2000:]}"
    report["calls"].append(entry)
stdlib = sysconfig.get_paths()["stdlib"]
for name, module in list(sys.modules.items()):
    origin = getattr(module, "__file__", None)
    if name not in ("__main__", "__mp_main__") and origin and not origin.startswith((bundle, runtime, stdlib)):
        report["outside"].append(f"{name}: {origin}")
print("BUNDLE-REPORT " + json.dumps(report, default=str))
