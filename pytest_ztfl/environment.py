"""The environment a matrix ran in, stored with every result row: machine, kernel, versions,
the git commit of the pytest-ztfl code that measured (``git_commit``, None when installed from
a package) and of the project that ran it (``project``: pytest's rootdir, where the matrix and
profiles usually live). A number without its environment cannot be compared."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "pytest-ztfl",
    "torch",
    "grpcio",
    "protobuf",
    "numpy",
    "scipy",
    "pytest",
    "pytest-benchmark",
    "cryptography",
)


def package_version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    return git_commit(Path(__file__).resolve().parent)


@functools.cache
def project(rootdir: Path) -> dict[str, Any]:
    """The project a run belongs to: its root directory and that directory's git commit."""
    return {"rootdir": str(rootdir), "git_commit": git_commit(rootdir)}


def git_commit(here: Path) -> str | None:
    """HEAD of the git work tree holding ``here`` (``-dirty`` with tracked changes), or None."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return proc.stdout.strip() + ("-dirty" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@functools.cache
def capture() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "versions": {p: package_version(p) for p in PACKAGES},
        "git_commit": _git_commit(),
    }
