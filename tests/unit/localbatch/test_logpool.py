"""LogPool: spare empty log files under <log_root>/.spare (take, refill, recycle, adoption)."""

from __future__ import annotations

import os
from pathlib import Path

from chalicelib.localbatch.execution.logpool import SPARE_FOLDER, LogPool


def spare_files(root: Path) -> set[str]:
    folder = root / SPARE_FOLDER
    return {str(path) for path in folder.iterdir()} if folder.exists() else set()


def test_take_on_an_empty_pool_gives_an_empty_string(tmp_path: Path) -> None:
    pool = LogPool(str(tmp_path), target=4)
    assert len(pool) == 0
    assert pool.take() == ""
    assert not (tmp_path / SPARE_FOLDER).exists()  # nothing is made until refill


def test_refill_makes_target_empty_files_and_take_pops_them(tmp_path: Path) -> None:
    pool = LogPool(str(tmp_path), target=5)
    pool.refill()
    assert len(pool) == 5
    made = spare_files(tmp_path)
    assert len(made) == 5
    assert all(os.path.isfile(path) and os.path.getsize(path) == 0 for path in made)
    taken = [pool.take() for _ in range(5)]
    assert set(taken) == made  # each spare handed out once, all of them from the folder
    assert len(pool) == 0 and pool.take() == ""
    pool.refill()
    assert len(pool) == 5 and not {pool.take() for _ in range(5)} & set(taken)  # fresh names


def test_refill_only_tops_up_to_target(tmp_path: Path) -> None:
    pool = LogPool(str(tmp_path), target=4)
    pool.refill()
    pool.take()
    pool.refill()
    assert len(pool) == 4
    assert len(spare_files(tmp_path)) == 5  # the taken one is the caller's now; 4 new + kept


def test_wants_refill_below_half_the_target(tmp_path: Path) -> None:
    pool = LogPool(str(tmp_path), target=4)
    assert pool.wants_refill()
    pool.refill()
    assert not pool.wants_refill()
    pool.take()
    pool.take()
    assert len(pool) == 2 and not pool.wants_refill()  # exactly half: enough
    pool.take()
    assert pool.wants_refill()


def test_refill_quietly_gives_up_when_the_folder_cannot_be_made(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    pool = LogPool(str(not_a_folder), target=3)
    pool.refill()
    assert len(pool) == 0 and pool.take() == ""


def test_recycle_makes_an_empty_log_a_spare_where_it_lies(tmp_path: Path) -> None:
    pool = LogPool(str(tmp_path), target=2)
    pool.refill()
    log = tmp_path / "def" / "job.log"
    log.parent.mkdir()
    log.touch()
    pool.recycle(str(log))
    assert log.exists()  # not moved: the launch that takes it renames it to its own log path
    assert len(pool) == 3
    taken = [pool.take() for _ in range(3)]
    assert set(taken) == spare_files(tmp_path) | {str(log)}
    assert all(os.path.getsize(path) == 0 for path in taken)


def test_recycle_leaves_a_log_with_output_alone(tmp_path: Path) -> None:
    pool = LogPool(str(tmp_path), target=2)
    pool.refill()
    log = tmp_path / "job.log"
    log.write_text("hello\n")
    pool.recycle(str(log))
    assert log.read_text() == "hello\n"
    assert len(pool) == 2 and len(spare_files(tmp_path)) == 2


def test_recycle_stops_at_twice_the_target(tmp_path: Path) -> None:
    pool = LogPool(str(tmp_path), target=2)
    pool.refill()
    logs = [tmp_path / f"job{n}.log" for n in range(3)]
    for log in logs:
        log.touch()
        pool.recycle(str(log))
    assert len(pool) == 4  # the third found the pool full
    assert {pool.take() for _ in range(4)} == spare_files(tmp_path) | {str(logs[0]), str(logs[1])}


def test_recycle_ignores_a_missing_path(tmp_path: Path) -> None:
    pool = LogPool(str(tmp_path), target=2)
    pool.refill()
    pool.recycle(str(tmp_path / "never-written.log"))
    assert len(pool) == 2 and len(spare_files(tmp_path)) == 2


def test_a_new_pool_adopts_only_empty_regular_files(tmp_path: Path) -> None:
    earlier = LogPool(str(tmp_path), target=3)
    earlier.refill()
    left = spare_files(tmp_path)
    folder = tmp_path / SPARE_FOLDER
    (folder / "written").write_text("not empty")
    (folder / "subfolder").mkdir()
    empty_target = tmp_path / "outside-empty"
    empty_target.touch()
    (folder / "link").symlink_to(empty_target)

    pool = LogPool(str(tmp_path), target=3)
    assert len(pool) == 3
    assert {pool.take() for _ in range(3)} == left
    assert pool.take() == ""
    assert (folder / "written").read_text() == "not empty"  # skipped, not removed


def test_adopted_spares_count_towards_the_target(tmp_path: Path) -> None:
    LogPool(str(tmp_path), target=2).refill()
    pool = LogPool(str(tmp_path), target=5)
    assert len(pool) == 2
    pool.refill()
    assert len(pool) == 5 and len(spare_files(tmp_path)) == 5


def test_a_spare_given_back_is_handed_out_first(tmp_path: Path) -> None:
    pool = LogPool(str(tmp_path / "logs"), target=2)
    pool.refill()
    first = pool.take()
    pool.give_back(first)
    pool.give_back("")  # nothing taken: nothing to give back
    assert len(pool) == 2 and pool.take() == first
