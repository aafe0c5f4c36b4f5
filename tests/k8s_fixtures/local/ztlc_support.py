"""Helpers shared by the local backend tests (importable: the test directory is on sys.path)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from k8s_fixtures.local import state
from k8s_fixtures.local.backend import LocalCluster


def interruptible() -> None:
    """``preexec_fn`` of a child that a test stops with Ctrl-C (SIGINT): default SIGINT in it.
    A suite started in the background of a non-interactive shell (``nohup pytest &``)
    inherits SIGINT ignored, exec keeps an ignored signal ignored, and Python then installs
    no KeyboardInterrupt handler: the child would never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

PY = "/usr/bin/python3"  # pods run the system interpreter (readable by any user)


def netns_named(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{prefix}-")]


def cgroup_dirs(name: str) -> list[Path]:
    base = Path("/sys/fs/cgroup")
    return [p for p in base.glob(f"*/**/ztfl-{name}") if p.is_dir()] if base.is_dir() else []


def leaks(name: str, state_root: Path) -> list[str]:
    """Everything a cluster called ``name`` could leave behind that is still there."""
    found = [f"netns {n}" for n in netns_named(name)]
    found += [f"process {p}" for p in state.marked_pids(f"{state_root.resolve()}:{name}")]
    found += [f"cgroup {d}" for d in cgroup_dirs(name)]
    if (state_root / name).exists():
        found.append(f"state dir {state_root / name}")
    return found


@contextlib.contextmanager
def module_cluster(factory: pytest.TempPathFactory, **kw: Any) -> Iterator[LocalCluster]:
    """A cluster for one test module (the session-scope reuse the harness does), its state in
    a fresh directory; nothing of it may be left afterwards. Skips when not root."""
    if os.geteuid() != 0:
        pytest.skip("not root")
    root = factory.mktemp("ztlc-state")
    root.chmod(0o755)
    with LocalCluster(prefix="ztlc", state_root=root, **kw) as c:
        yield c
    assert leaks(c.name, root) == []
