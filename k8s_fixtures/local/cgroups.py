"""Per-container cgroups: CPU and memory limits, OOM detection, and killing a whole tree.

Supports cgroup v1 (separate ``cpu``, ``cpuacct``, ``memory`` hierarchies, as on the CI
machine) and v2 (unified). A cluster's groups are nested under the cgroup the harness itself
runs in, so any limit the harness lives under still applies to its pods.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PERIOD_US = 100_000
_V1_CONTROLLERS = ("memory", "cpu", "cpuacct")


def _mounts() -> dict[str, Path]:
    """controller (or ``"unified"``) -> mount point of its hierarchy."""
    out: dict[str, Path] = {}
    with open("/proc/self/mounts") as f:
        for line in f:
            _dev, mnt, fstype, opts, *_ = line.split()
            if fstype == "cgroup2":
                out.setdefault("unified", Path(mnt))
            elif fstype == "cgroup":
                for opt in opts.split(","):
                    if opt in _V1_CONTROLLERS:
                        out[opt] = Path(mnt)
    return out


def _own_paths() -> dict[str, str]:
    """controller (or ``""`` for v2) -> this process's cgroup path in that hierarchy."""
    out: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    return out


@dataclass(frozen=True)
class CgroupRoot:
    """Where a cluster's cgroups go: one directory per hierarchy used."""

    version: int
    dirs: tuple[Path, ...]  # v1: memory, cpu, cpuacct (in that order); v2: one

    @staticmethod
    def detect(cluster: str) -> CgroupRoot | str:
        """The cgroup root for ``cluster``, or why cgroups cannot be used here."""
        if os.geteuid() != 0:
            return "not root: cgroups are not delegated to this user"
        mounts, own = _mounts(), _own_paths()
        if all(c in mounts for c in _V1_CONTROLLERS):
            dirs = tuple(
                mounts[c] / own.get(c, "/").lstrip("/") / f"ztfl-{cluster}"
                for c in _V1_CONTROLLERS
            )
            return CgroupRoot(1, dirs)
        if "unified" in mounts and "" in own:
            base = mounts["unified"] / own[""].lstrip("/")
            ctrls = (base / "cgroup.controllers")
            if not ctrls.exists() or not {"cpu", "memory"} <= set(ctrls.read_text().split()):
                return f"cgroup v2 at {base} does not offer the cpu and memory controllers"
            return CgroupRoot(2, (base / f"ztfl-{cluster}",))
        return "no cgroup memory/cpu controllers are mounted"

    def create(self) -> None:
        """Create the directories; they must not exist (else they belong to someone else)."""
        for d in self.dirs:
            d.mkdir()
        if self.version == 2:
            (self.dirs[0] / "cgroup.subtree_control").write_text("+cpu +memory")

    def container(self, name: str) -> ContainerCgroup:
        return ContainerCgroup(self.version, tuple(d / name for d in self.dirs))


@dataclass(frozen=True)
class ContainerCgroup:
    """One container's cgroup (one directory per hierarchy)."""

    version: int
    dirs: tuple[Path, ...]

    def create(self, cpu_millis: int | None, memory_bytes: int | None) -> None:
        for d in self.dirs:
            d.mkdir(exist_ok=True)
        mem, cpu = self.dirs[0], self.dirs[1 if self.version == 1 else 0]
        if self.version == 1:
            if memory_bytes is not None:
                (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
                memsw = mem / "memory.memsw.limit_in_bytes"
                if memsw.exists():  # no swapping out of an OOM
                    memsw.write_text(str(memory_bytes))
            if cpu_millis is not None:
                (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (cpu / "cpu.cfs_quota_us").write_text(str(cpu_millis * PERIOD_US // 1000))
        else:
            if memory_bytes is not None:
                (mem / "memory.max").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):
                    (mem / "memory.swap.max").write_text("0")
            if cpu_millis is not None:
                (cpu / "cpu.max").write_text(f"{cpu_millis * PERIOD_US // 1000} {PERIOD_US}")

    @property
    def procs_files(self) -> list[str]:
        """Files a process writes ``0`` into to join this cgroup (done by the launcher)."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> list[int]:
        try:
            text = (self.dirs[0] / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            for line in (self.dirs[0] / name).read_text().splitlines():
                key, _, val = line.partition(" ")
                if key == "oom_kill":
                    return int(val)
        except OSError:
            pass
        return 0

    def _cpu_stat(self) -> dict[str, int]:
        d = self.dirs[1 if self.version == 1 else 0]
        out = {}
        for line in (d / "cpu.stat").read_text().splitlines():
            key, _, val = line.partition(" ")
            out[key] = int(val)
        return out

    def cpu_usage_ns(self) -> int:
        """CPU time used by the container so far (cpuacct in v1, cpu.stat in v2)."""
        if self.version == 1:
            return int((self.dirs[2] / "cpuacct.usage").read_text())
        return self._cpu_stat().get("usage_usec", 0) * 1000

    def throttled_ns(self) -> int:
        """Time the container's CPU limit held it back so far (cpu.stat: v1 ``throttled_time``
        in ns, v2 ``throttled_usec``); 0 without a limit."""
        st = self._cpu_stat()
        return st.get("throttled_time", 0) if self.version == 1 else \
            st.get("throttled_usec", 0) * 1000

    def memory_peak_bytes(self) -> int | None:
        """The most memory the container's processes have held at once (v1
        ``memory.max_usage_in_bytes``, v2 ``memory.peak``; None where the kernel has no such
        file)."""
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            return int((self.dirs[0] / name).read_text())
        except (OSError, ValueError):
            return None

    def signal_all(self, sig: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill_all(self, timeout: float = 5.0) -> bool:
        """SIGKILL every process in the group until it is empty; True if it emptied."""
        deadline = time.monotonic() + timeout
        while self.pids():
            if self.version == 2 and (self.dirs[0] / "cgroup.kill").exists():
                with contextlib.suppress(OSError):
                    (self.dirs[0] / "cgroup.kill").write_text("1")
            else:
                self.signal_all(signal.SIGKILL)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def remove(self) -> None:
        for d in self.dirs:
            remove_dir(d)


def remove_dir(d: Path, timeout: float = 2.0) -> None:
    """rmdir a cgroup directory (retrying briefly: exiting tasks leave it busy for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def remove_tree(d: Path) -> None:
    """Kill everything in a cgroup subtree and remove it, children first."""
    if not d.is_dir():
        return
    for child in sorted((p for p in d.iterdir() if p.is_dir()), reverse=True):
        remove_tree(child)
    ContainerCgroup(1, (d,)).kill_all()
    remove_dir(d)
