"""The conveyor-spawner wire format as Python writes and reads it (layouts documented in spawner.c)."""

from __future__ import annotations

import struct

import pytest

from chalicelib.localbatch.execution.spawner_link import (
    EV_DISARMED,
    EV_EXITED,
    EV_FAILED,
    EV_STARTED,
    REQ_ARM,
    REQ_DISARM,
    REQ_FAIL,
    REQ_KILL,
    REQ_LAUNCH,
    REQ_LAUNCHER,
    REQ_STOP,
    decode_event,
    encode_arm,
    encode_disarm,
    encode_env,
    encode_fail,
    encode_kill,
    encode_launch,
    encode_launcher,
    encode_stop,
    fs_bytes,
)


def read_strings(data: bytes, pos: int, count: int) -> tuple[list[bytes], int]:
    out = []
    for _ in range(count):
        (size,) = struct.unpack_from("<I", data, pos)
        out.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    return out, pos


def test_launch_record_layout() -> None:
    record = encode_launch(7, b"/w", b"/l.log", b"", [b"echo", b"hi there"], [b"A=1", b"B="], spare=b"/s/1",
                           cgroups=b"/cg/a/cgroup.procs\n/cg/b/cgroup.procs", launcher=3)
    (length,) = struct.unpack_from("<I", record)
    assert length == len(record) - 4
    assert record[4] == REQ_LAUNCH
    assert int.from_bytes(record[5:13], "little") == 7
    assert int.from_bytes(record[13:17], "little") == 3  # the warm launcher to hand it to
    paths, pos = read_strings(record, 17, 5)
    assert paths == [b"/w", b"/l.log", b"/s/1", b"/cg/a/cgroup.procs\n/cg/b/cgroup.procs", b""]
    (argc,) = struct.unpack_from("<I", record, pos)
    argv, pos = read_strings(record, pos + 4, argc)
    (envc,) = struct.unpack_from("<I", record, pos)
    env, pos = read_strings(record, pos + 4, envc)
    assert (argv, env, pos) == ([b"echo", b"hi there"], [b"A=1", b"B="], len(record))


def test_launcher_record_layout() -> None:
    record = encode_launcher(2, b"/py", [b"/py", b"/x/warm_launcher.py", b"tool"], [b"PYTHONPATH=/img"])
    (length,) = struct.unpack_from("<I", record)
    assert length == len(record) - 4
    assert record[4] == REQ_LAUNCHER
    assert int.from_bytes(record[5:9], "little") == 2
    (program,), pos = read_strings(record, 9, 1)
    (argc,) = struct.unpack_from("<I", record, pos)
    argv, pos = read_strings(record, pos + 4, argc)
    (envc,) = struct.unpack_from("<I", record, pos)
    env, pos = read_strings(record, pos + 4, envc)
    assert (program, argv, env, pos) == (b"/py", [b"/py", b"/x/warm_launcher.py", b"tool"], [b"PYTHONPATH=/img"],
                                         len(record))


def test_arm_record_wraps_a_launch_body() -> None:
    launch = encode_launch(8, b"/w", b"/l.log", b"", [b"true"], [])
    record = encode_arm(3, launch)
    (length,) = struct.unpack_from("<I", record)
    assert length == len(record) - 4
    assert record[4] == REQ_ARM
    assert int.from_bytes(record[5:13], "little") == 3
    assert record[13:] == launch[5:]  # the LAUNCH body from its id on
    assert encode_disarm(3) == struct.pack("<IBQ", 9, REQ_DISARM, 3)


def test_small_records() -> None:
    assert encode_stop(3, 1500) == struct.pack("<IBQI", 13, REQ_STOP, 3, 1500)
    assert encode_stop(3, 2**40) == struct.pack("<IBQI", 13, REQ_STOP, 3, 2**32 - 1)
    assert encode_kill(9) == struct.pack("<IBQ", 9, REQ_KILL, 9)
    fail = encode_fail(5, "CannotPullContainerError: é")
    raw = "CannotPullContainerError: é".encode()
    assert fail == struct.pack("<IBQI", 13 + len(raw), REQ_FAIL, 5, len(raw)) + raw


def test_events_decode() -> None:
    assert decode_event(struct.pack("<BQi", EV_STARTED, 4, 1234)) == (EV_STARTED, 4, 1234)
    assert decode_event(struct.pack("<BQi", EV_EXITED, 4, 137)) == (EV_EXITED, 4, 137)
    assert decode_event(struct.pack("<BQ", EV_DISARMED, 4)) == (EV_DISARMED, 4, 0)
    message = b"/x: No such file or directory"
    assert decode_event(struct.pack("<BQI", EV_FAILED, 4, len(message)) + message) == \
        (EV_FAILED, 4, "/x: No such file or directory")


def test_env_entries_and_what_execve_cannot_carry() -> None:
    assert encode_env({"A": "1", "PATH": "/bin:/usr/bin"}) == [b"A=1", b"PATH=/bin:/usr/bin"]
    with pytest.raises(ValueError, match="illegal environment variable name"):
        encode_env({"A=B": "1"})
    with pytest.raises(ValueError, match="illegal environment variable name"):
        encode_env({"": "1"})
    with pytest.raises(ValueError, match="embedded null byte"):
        encode_env({"A": "x\0y"})
    with pytest.raises(TypeError):
        encode_env({"A": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="embedded null byte"):
        fs_bytes("a\0")
