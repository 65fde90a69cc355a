"""Helpers every stage tool shares: failing with one clear line, sample names, the reference, stats files."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, NoReturn

# A sample's read files: <sample>_R1.fastq.gz (also _1, .fq, uncompressed).
READ_FILE = re.compile(r"^(?P<sample>.+?)_R?(?P<mate>[12])\.f(ast)?q(\.gz)?$")
FASTA_SUFFIXES = (".fa", ".fasta", ".fna")
REFERENCE_NAMES = ("ref.fa", "ref.fasta", "reference.fa", "reference.fasta", "genome.fa")


class ToolError(Exception):
    """A failure the tool reports as one line on stderr with a non-zero exit."""


def fail(tool: str, message: str, code: int = 1) -> NoReturn:
    """Prints `<tool>: <message>` on stderr (the reason a person reads in the run summary) and exits."""
    print(f"{tool}: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def run_tool(tool: str, body: Any) -> int:
    """Calls `body()`; turns ToolError (and unexpected library errors) into one line and exit 1."""
    try:
        body()
    except ToolError as err:
        fail(tool, str(err))
    except (OSError, ValueError) as err:
        # pysam and the file system raise these with a useful message; no traceback for the user.
        fail(tool, f"{type(err).__name__}: {err}")
    except Exception as err:
        import pysam

        if not isinstance(err, pysam.utils.SamtoolsError):
            raise
        fail(tool, str(err).strip().splitlines()[-1])
    return 0


def sample_from_reads(path: str | Path) -> str:
    """`reads/S01_R1.fastq.gz` -> `S01`.

    Raises:
        ToolError: the name does not follow <sample>_R1/_R2.fastq[.gz].
    """
    match = READ_FILE.match(Path(path).name)
    if not match:
        raise ToolError(f"cannot tell the sample from {Path(path).name!r}: expected <sample>_R1.fastq.gz")
    return match.group("sample")


def check_read_pair(r1: str | Path, r2: str | Path) -> str:
    """The sample of an R1/R2 pair, after checking both names agree and the mates are 1 then 2."""
    first, second = READ_FILE.match(Path(r1).name), READ_FILE.match(Path(r2).name)
    sample = sample_from_reads(r1)
    sample_from_reads(r2)
    assert first and second
    if first.group("mate") != "1" or second.group("mate") != "2":
        raise ToolError(f"expected R1 then R2, got {Path(r1).name} and {Path(r2).name}")
    if second.group("sample") != sample:
        raise ToolError(f"R1 and R2 belong to different samples: {Path(r1).name}, {Path(r2).name}")
    return sample


def pick_reads(paths: list[Path]) -> tuple[Path, Path]:
    """The R1 and R2 FASTQ among an item's files (other files, such as the reference, are ignored).

    Raises:
        ToolError: not exactly one R1 and one R2 of the same sample.
    """
    mates: dict[str, list[Path]] = {"1": [], "2": []}
    for path in paths:
        match = READ_FILE.match(Path(path).name)
        if match:
            mates[match.group("mate")].append(Path(path))
    if len(mates["1"]) != 1 or len(mates["2"]) != 1:
        names = ", ".join(Path(p).name for p in paths) or "none"
        raise ToolError(f"expected one <sample>_R1 and one <sample>_R2 FASTQ among the inputs, got: {names}")
    check_read_pair(mates["1"][0], mates["2"][0])
    return mates["1"][0], mates["2"][0]


def pick_reference(locations: list[str]) -> Path:
    """The reference FASTA from a list of locations: a single file/folder/`file://` URI, or
    the first FASTA among an item's files (each item of the example carries the reference).

    Raises:
        ToolError: no FASTA among the locations.
    """
    if len(locations) == 1:
        return resolve_reference(locations[0])
    for location in locations:
        if str(location).endswith(FASTA_SUFFIXES):
            return resolve_reference(location)
    names = ", ".join(Path(str(p)).name for p in locations) or "none"
    raise ToolError(f"no reference FASTA ({'/'.join(FASTA_SUFFIXES)}) among the inputs: {names}")


def resolve_reference(location: str | Path) -> Path:
    """A FASTA path from a FASTA file, a folder holding one, or a `file://` URI of either.

    Raises:
        ToolError: nothing usable there (the message says what was looked for).
    """
    text = str(location)
    if text.startswith("file://"):
        text = text[len("file://") :]
    elif "://" in text:
        raise ToolError(f"reference {text!r} is not a local path; the runner stages remote inputs first")
    path = Path(text)
    if path.is_dir():
        for name in REFERENCE_NAMES:
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise ToolError(f"no reference FASTA ({', '.join(REFERENCE_NAMES)}) in {path}")
    if not path.is_file():
        raise ToolError(f"reference FASTA not found: {path}")
    if not Path(f"{path}.fai").is_file():
        import pysam

        try:
            pysam.faidx(str(path))
        except pysam.utils.SamtoolsError as err:
            raise ToolError(f"cannot index the reference {path.name}: not a FASTA (plain or bgzip)?") from err
    return path


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ToolError(f"missing {path.name} in {path.parent}: the upstream stage did not write it") from err
    except json.JSONDecodeError as err:
        raise ToolError(f"{path} is not valid JSON: {err.msg} at line {err.lineno}") from err


def find_one(folder: Path, pattern: str, what: str) -> Path:
    """The single file matching `pattern` in `folder`."""
    matches = sorted(folder.glob(pattern))
    if len(matches) != 1:
        found = ", ".join(p.name for p in matches) or "none"
        raise ToolError(f"expected one {what} ({pattern}) in {folder}, found {found}")
    return matches[0]


def carry_stats(upstream: Path | None, out: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """Copies upstream stats files into `out` so the join sees every stage's figures for a sample."""
    stats: dict[str, Any] = {}
    if upstream is None:
        return stats
    for name in names:
        source = upstream / f"{name}.json"
        if source.is_file():
            stats[name] = read_json(source)
            write_json(out / source.name, stats[name])
    return stats


def bcftools(command: str, *args: str) -> None:
    """Runs one bcftools sub-command through pysam, honouring `-o`; failures become ToolError."""
    import pysam
    import pysam.bcftools

    # Level 1 keeps htslib's errors and drops its warnings (bcftools' own header
    # lines trip a "MQ should be declared as Type=Float" sanity warning).
    pysam.set_verbosity(1)
    try:
        getattr(pysam.bcftools, command)(*args, catch_stdout=False)
    except pysam.utils.SamtoolsError as err:
        raise ToolError(f"bcftools {command} failed: {str(err).strip().splitlines()[-1]}") from err
