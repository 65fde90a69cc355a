"""DockerExecutor plumbing against a fake `docker` CLI (the real engine is absent here).

The fake runs the container command as a local process and keeps container
state in files, which exercises everything but Docker itself: argv, the reaper,
the inspect/remove finisher, OOM and pull-failure interpretation, stop, orphan
listing, and local images going to the inner ProcessExecutor.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.localbatch.execution.docker_executor import DockerExecutor, container_name
from chalicelib.localbatch.execution.executor import OOM_REASON, ExitInfo, LaunchRequest

FAKE_DOCKER = r'''
import json, os, signal, subprocess, sys
state_dir = os.environ["FAKE_DOCKER_STATE"]
VALUED = {"--name", "--label", "-e", "--memory", "--memory-swap", "--cpus", "--gpus", "--mount", "-w"}

def path(name, ext="json"):
    return os.path.join(state_dir, f"{name}.{ext}")

def save(name, state):
    with open(path(name), "w") as handle:
        json.dump(state, handle)

cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "run":
    opts, i = {}, 0
    while args[i].startswith("-"):
        if args[i] in VALUED:
            opts.setdefault(args[i], []).append(args[i + 1]); i += 2
        else:
            i += 1
    image, command = args[i], args[i + 1:]
    name = opts["--name"][0]
    labels = dict(item.split("=", 1) for item in opts.get("--label", []))
    if image == "fake/pull-fail":
        print(f"docker: Error response from daemon: pull access denied for {image}, repository does not exist.",
              file=sys.stderr)
        print("See 'docker run --help'.", file=sys.stderr)
        sys.exit(125)
    state = {"OOMKilled": False, "ExitCode": 0, "Error": "", "Labels": labels}
    if image == "fake/oom":
        state.update(OOMKilled=True, ExitCode=137); save(name, state); sys.exit(137)
    env = dict(item.split("=", 1) for item in opts.get("-e", []))
    env["PATH"] = os.environ["PATH"]
    import csv
    mount = dict(field.split("=", 1) for field in next(csv.reader([opts["--mount"][0]])))
    host_dir = mount["source"]
    try:
        child = subprocess.Popen(command, env=env, cwd=host_dir)
    except FileNotFoundError:
        state.update(ExitCode=127, Error=f'exec: "{command[0]}": executable file not found in $PATH')
        save(name, state); sys.exit(127)
    with open(path(name, "pid"), "w") as handle:
        handle.write(str(child.pid))
    save(name, dict(state, Running=True))
    code = child.wait()
    code = 128 - code if code < 0 else code
    state.update(ExitCode=code); save(name, state); sys.exit(code)
elif cmd == "inspect":
    name = args[-1]
    if not os.path.exists(path(name)):
        print(f"Error: No such object: {name}", file=sys.stderr); sys.exit(1)
    state = json.load(open(path(name)))
    print(json.dumps({k: state[k] for k in ("OOMKilled", "ExitCode", "Error")}))
elif cmd == "rm":
    for name in [a for a in args if not a.startswith("-")]:
        for ext in ("json", "pid"):
            if os.path.exists(path(name, ext)):
                os.unlink(path(name, ext))
        with open(os.path.join(state_dir, "removed.log"), "a") as handle:
            handle.write(name + "\n")
elif cmd == "stop":
    name = args[-1]
    if not os.path.exists(path(name, "pid")):
        print(f"Error: No such container: {name}", file=sys.stderr); sys.exit(1)
    os.kill(int(open(path(name, "pid")).read()), signal.SIGTERM)
elif cmd == "ps":
    token = next(a for a in args if a.startswith("label=")).split("=", 2)[2]
    for entry in sorted(os.listdir(state_dir)):
        if entry.endswith(".json"):
            labels = json.load(open(os.path.join(state_dir, entry)))["Labels"]
            if labels.get("conveyor.engine") == token:
                print(f"{entry[:-5]}\t{labels['conveyor.attempt']}")
else:
    sys.exit(f"fake docker: unsupported command {cmd}")
'''


class FakeDocker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "docker-state"
        self.state.mkdir()
        self.cli = root / "docker"
        self.cli.write_text(f"#!{sys.executable}\n{FAKE_DOCKER}")
        self.cli.chmod(0o755)
        os.environ["FAKE_DOCKER_STATE"] = str(self.state)
        self.token = f"fake-docker-{os.getpid()}-{time.monotonic_ns()}"
        self.executor = DockerExecutor(self.token, docker=str(self.cli))
        self.exits: queue.SimpleQueue[ExitInfo] = queue.SimpleQueue()
        self.executor.set_exit_callback(self.exits.put)

    def request(self, key: str, *argv: str, image: str = "fake/python", **options: object) -> LaunchRequest:
        values: dict[str, object] = {
            "attempt_key": key, "argv": argv, "env": {"AWS_BATCH_JOB_ID": key.split("#")[0]},
            "workdir": str(self.root / "work" / key.replace("#", "_")),
            "log_path": str(self.root / "logs" / f"{key.replace('#', '_')}.log"), "image": image,
        }
        values.update(options)
        return LaunchRequest(**values)  # type: ignore[arg-type]

    def run(self, key: str, *argv: str, **options: object) -> ExitInfo:
        self.executor.launch(self.request(key, *argv, **options))
        return self.exits.get(timeout=30)

    def log(self, key: str) -> str:
        return (self.root / "logs" / f"{key.replace('#', '_')}.log").read_text()

    def removed(self) -> list[str]:
        removed = self.state / "removed.log"
        return removed.read_text().split() if removed.exists() else []


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDocker]:
    made = FakeDocker(tmp_path)
    yield made
    made.executor.close()
    os.environ.pop("FAKE_DOCKER_STATE", None)


def test_exit_code_env_workdir_and_log(fake: FakeDocker) -> None:
    script = "import os; print(os.environ['AWS_BATCH_JOB_ID'], os.environ['CONVEYOR_ATTEMPT_KEY'], os.getcwd())"
    info = fake.run("d:1#1", sys.executable, "-c", script + "; raise SystemExit(4)")
    assert info == ExitInfo("d:1#1", 4, None, True)
    assert fake.log("d:1#1").split() == ["d:1", "d:1#1", str(fake.root / "work" / "d:1_1")]
    assert fake.removed() == [container_name("d:1#1")]  # inspected, then removed
    assert fake.executor.running() == []


def test_oom_killed_container_is_reported_as_oom(fake: FakeDocker) -> None:
    info = fake.run("d:2#1", "anything", image="fake/oom", memory_mib=16)
    assert info == ExitInfo("d:2#1", 137, OOM_REASON, True)


def test_pull_failure_is_cannot_pull(fake: FakeDocker) -> None:
    info = fake.run("d:3#1", "true", image="fake/pull-fail")
    assert (info.exit_code, info.started) == (None, False)
    assert info.reason == ("CannotPullContainerError: Error response from daemon: pull access denied for "
                           "fake/pull-fail, repository does not exist.")


def test_command_not_found_in_container_is_cannot_start(fake: FakeDocker) -> None:
    info = fake.run("d:4#1", "no-such-tool")
    assert info.started is False
    assert info.reason == 'CannotStartContainerError: exec: "no-such-tool": executable file not found in $PATH'


def test_stop_uses_docker_stop(fake: FakeDocker) -> None:
    fake.executor.launch(fake.request("d:5#1", "sleep", "60"))
    pid_file = fake.state / f"{container_name('d:5#1')}.pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert time.monotonic() < deadline, "fake container never started"
        time.sleep(0.02)
    assert fake.executor.running() == ["d:5#1"]
    fake.executor.stop("d:5#1", 1.0)
    assert fake.exits.get(timeout=30).exit_code == 143


def test_local_image_runs_as_a_process(fake: FakeDocker, tmp_path: Path) -> None:
    info = fake.run("d:6#1", "true", image=f"file://{tmp_path}")
    assert info == ExitInfo("d:6#1", 0, None, True)
    assert fake.removed() == []  # never went through docker


def test_kill_orphans_removes_containers_of_this_engine(fake: FakeDocker) -> None:
    name = container_name("old:1#3")
    labels = {"conveyor.engine": fake.token, "conveyor.attempt": "old:1#3"}
    (fake.state / f"{name}.json").write_text(json.dumps({"Labels": labels}))
    other = {"conveyor.engine": "another-engine", "conveyor.attempt": "x#1"}
    (fake.state / "conveyor-x.json").write_text(json.dumps({"Labels": other}))
    assert fake.executor.kill_orphans() == ["old:1#3"]
    assert fake.removed() == [name]
    assert (fake.state / "conveyor-x.json").exists()
