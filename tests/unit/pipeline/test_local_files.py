"""local_files: every file under a folder, in path order, links to folders not followed, escaping links refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chalicelib.pipeline.errors import PathEscapeError
from chalicelib.pipeline.objectstore import local_files


def _tree(root: Path) -> Path:
    folder = root / "out"
    for rel in ("b.txt", "a-b/x", "a/z", "a/y/deep.txt", "real/c"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(rel)
    os.symlink("real", folder / "linked-folder")
    os.symlink("b.txt", folder / "linked-file")
    os.symlink("nowhere", folder / "broken")
    os.mkfifo(folder / "pipe")
    return folder


def test_files_in_path_order_with_links_to_files_and_nothing_else(tmp_path: Path) -> None:
    folder = _tree(tmp_path)
    found = local_files(folder)
    # "a/..." before "a-b/...": folder by folder, as paths sort (not as the joined strings do).
    assert [key for key, _ in found] == ["a/y/deep.txt", "a/z", "a-b/x", "b.txt", "linked-file", "real/c"]
    assert all(path == folder / key for key, path in found)


def test_the_same_files_as_a_recursive_glob(tmp_path: Path) -> None:
    folder = _tree(tmp_path)
    globbed = [(p.relative_to(folder).as_posix(), p) for p in sorted(folder.rglob("*")) if p.is_file()]
    assert local_files(folder) == globbed


@pytest.mark.parametrize("target", ["../../../elsewhere", "/etc"])
def test_a_link_out_of_the_folder_is_refused_wherever_it_is(tmp_path: Path, target: str) -> None:
    folder = _tree(tmp_path)
    os.symlink(target, folder / "a" / "y" / "escape")
    with pytest.raises(PathEscapeError, match="a/y/escape links outside the output folder"):
        local_files(folder)


def test_an_empty_folder_has_no_files(tmp_path: Path) -> None:
    assert local_files(tmp_path) == []
