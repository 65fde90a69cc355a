"""A join over many items whose command names an upstream stage: paths relative to the tool's working folder
when absolute ones overflow execve's limit, a clear refusal when even those do."""

from __future__ import annotations

import os
from pathlib import Path

from chalicelib.objectstores import open_store
from chalicelib.pipeline.invocation import build_runner_argv
from chalicelib.pipeline.manifest import write_manifest
from chalicelib.pipeline.model import Item
from chalicelib.runner.command_line import MAX_ARG_STRLEN, fits, relative_values
from tests.integration.pipeline.test_runner_file import PY, run_runner

# Counts its folder arguments, checks each exists from its working folder, writes the count.
COUNT = (
    "import os, sys\n"
    "folders = sys.argv[2:]\n"
    "assert all(os.path.isdir(f) for f in folders), 'a folder is missing'\n"
    "print('absolute' if all(os.path.isabs(f) for f in folders) else 'relative', len(folders), flush=True)\n"
    "open(os.path.join(sys.argv[1], 'n.txt'), 'w').write(str(len(folders)))\n"
)


def _published_upstream(tmp_path: Path, count: int) -> dict[str, object]:
    """A run prefix whose stage ``a`` published an (empty) output for each of ``count`` items."""
    root = tmp_path / "runs" / "r1"
    prefix = root.as_uri()
    items = [Item(f"item-with-a-long-key-{n:06d}", ((tmp_path / "x").as_uri(),)) for n in range(count)]
    write_manifest(open_store(prefix), prefix, items)
    for item in items:
        folder = root / "a" / item.key
        folder.mkdir(parents=True)
        (folder / "_SUCCESS").write_bytes(b"")
    work = tmp_path / "work"
    work.mkdir()
    return {"prefix": prefix, "root": root, "work": work}


def _join(run: dict[str, object], tool: list[str]) -> list[str]:
    return build_runner_argv(run_prefix=str(run["prefix"]), stage="c", tool_argv=tool, join=True,
                             upstream={"a": "foreach"})


def test_a_join_too_long_for_absolute_paths_runs_with_relative_ones(tmp_path: Path) -> None:
    # Deep enough that the absolute paths (work/up/a/<key>) overflow 2 MiB, the relative ones not.
    deep = tmp_path / ("d" * 200) / ("e" * 200)
    deep.mkdir(parents=True)
    run = _published_upstream(deep, 8000)
    result = run_runner(run, _join(run, [PY, "-c", COUNT, "{out}", "{a}"]))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "relative 8000" in result.stdout
    assert "staged paths given relative to the working folder" in result.stderr
    assert (Path(run["root"]) / "c" / "n.txt").read_text() == "8000"  # type: ignore[arg-type]


def test_a_short_join_keeps_absolute_paths(tmp_path: Path) -> None:
    run = _published_upstream(tmp_path, 3)
    result = run_runner(run, _join(run, [PY, "-c", COUNT, "{out}", "{a}"]))
    assert result.returncode == 0, result.stderr
    assert "absolute 3" in result.stdout


def test_one_argument_too_long_even_relative_is_refused_before_the_tool_runs(tmp_path: Path) -> None:
    run = _published_upstream(tmp_path, 8000)  # "{a}" inside a longer argument: one space-joined string
    result = run_runner(run, _join(run, [PY, "-c", COUNT, "{out}", "--inputs={a}"]))
    assert result.returncode == 2
    assert "does not fit this system's limit" in result.stderr and "Traceback" not in result.stderr
    assert not (Path(run["root"]) / "c").exists()  # type: ignore[arg-type]


def test_fits_counts_arguments_environment_and_single_argument_length() -> None:
    env = {"A": "x" * 100}
    assert fits(["true", "a" * 1000], env, limit=10_000)
    assert not fits(["true", *["a" * 100] * 100], env, limit=10_000)
    assert not fits(["true", "a" * MAX_ARG_STRLEN], {}, limit=10**9)
    assert relative_values({"a": ["/s/up/a/k", "/other/p"], "key": ["k"]}, "/s") == {
        "a": ["up/a/k", "/other/p"], "key": ["k"]}
    assert os.path.relpath("/s/out", "/s") == "out"
