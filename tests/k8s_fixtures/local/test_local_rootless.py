"""The same backend as an ordinary user, inside a user + network + mount namespace.

As root, the test creates a throw-away user (``useradd``), runs a scenario as that user with
the system Python (the project venv's interpreter lives under /root, which other users cannot
read), and removes the user again. Leak checks: no process of that user survives, and its
state directory is gone (its namespaces exist only inside its own mount namespace and die
with its processes).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.privileged
HERE = Path(__file__).parent
SRC = Path(__file__).resolve().parents[3]  # the repository: the packages are at its top
PY = "/usr/bin/python3"


def user_processes(uid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    out.append(int(d))
            except FileNotFoundError:
                pass
    return out


def _skip_or_fail(why: str) -> None:
    if os.environ.get("ZTFL_REQUIRE_PRIVILEGED") == "1":  # CI: rootless must be tested
        pytest.fail(f"ZTFL_REQUIRE_PRIVILEGED=1 but {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def user() -> Iterator[pwd.struct_passwd]:
    if shutil.which("useradd") is None:
        _skip_or_fail("useradd is not installed: cannot create an ordinary user for the test")
    r = subprocess.run([PY, "-c", "import yaml"], capture_output=True)
    if r.returncode != 0:
        _skip_or_fail(f"{PY} lacks PyYAML (python3-yaml): the ordinary user cannot import "
                      "k8s_fixtures")
    name = f"ztlc{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    pw = pwd.getpwnam(name)
    try:
        yield pw
    finally:
        for pid in user_processes(pw.pw_uid):
            with_suppress_kill(pid)
        subprocess.run(["userdel", "--remove", name], capture_output=True)
        assert not Path(pw.pw_dir).exists()


def with_suppress_kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def as_user(pw: pwd.struct_passwd, argv: list[str]) -> subprocess.Popen[str]:
    env = {"HOME": pw.pw_dir, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC)}
    return subprocess.Popen(argv, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                            env=env, cwd=pw.pw_dir, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_rootless_cluster_scenario(user: pwd.struct_passwd) -> None:
    root = Path(user.pw_dir) / "state"
    proc = as_user(user, [PY, str(HERE / "ztlc_rootless.py"), str(root)])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["mode"] == "rootless"
    assert (res["exit_code"], res["logs"]) == (3, "hello\n")
    assert res["resolv"].startswith("nameserver 10.244.")
    assert any("not enforced" in w for w in res["warnings"])
    # The namespaces were never in the host's view.
    host = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert res["node"] not in host
    assert user_processes(user.pw_uid) == []
    assert not (root / res["name"]).exists()


def test_rootless_sigkill_is_cleaned_on_next_start(user: pwd.struct_passwd) -> None:
    root = Path(user.pw_dir) / "state"
    harness = as_user(user, [PY, str(HERE / "ztlc_harness.py"), str(root), "ztlc-rl-kill"])
    assert harness.stdout is not None
    line = harness.stdout.readline()
    assert line.startswith("READY"), harness.communicate()[1]
    harness.kill()
    harness.communicate(timeout=30)
    assert len(user_processes(user.pw_uid)) >= 3  # holder, dnsmasq, pods survive the kill
    proc = as_user(user, [PY, "-c", (
        "import sys; from pathlib import Path; from k8s_fixtures.local import state; "
        f"print(sorted(state.clean_stale(Path({str(root)!r}))))")])
    out, err = proc.communicate(timeout=60)
    assert out.strip() == "['ztlc-rl-kill']", err
    deadline = time.monotonic() + 10
    while user_processes(user.pw_uid):
        assert time.monotonic() < deadline, user_processes(user.pw_uid)
        time.sleep(0.02)
    assert not (root / "ztlc-rl-kill").exists()
