"""The state directory: what each local cluster created, so nothing outlives a dead harness.

Every cluster has ``<root>/<name>/`` with a ``lock`` file its owner holds (``flock``) for its
whole life and a ``state.json`` listing everything it created *before* creating it. The kernel
drops the lock when the owner dies, however it dies, so on the next start a cluster directory
whose lock can be taken (and that was not deliberately detached) belongs to a dead harness:
:func:`purge` kills its processes, deletes its namespaces and cgroups, and removes the record.
Only what a record lists is ever touched, never other users' namespaces. A calibration's
private topology (``ztdl-<random>``, :func:`k8s_fixtures.netem.calibrate.private_topology`) is
recorded the same way, so it is purged like a cluster when its owner dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from k8s_fixtures.local import cgroups
from k8s_fixtures.local.privileges import tool
from k8s_fixtures.proc import start_time

NETNS_DIR = Path("/run/netns")  # where `ip netns` keeps named namespaces
LEFT = "NOT REMOVED"  # prefix of a purge line naming what could not be removed
MARKER = "ZTFL_LOCAL_CLUSTER"
"""Environment variable every pod process carries: ``<state root>:<cluster name>``."""


def default_root() -> Path:
    """``$ZTFL_STATE_DIR``, else ``/run/ztfl`` for root, else ``~/.local/state/ztfl``."""
    env = os.environ.get("ZTFL_STATE_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/run/ztfl")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ztfl"


@dataclass
class Record:
    """What a cluster created (persisted as state.json)."""

    name: str
    mode: str
    owner_pid: int
    detached: bool = False
    cidr: str = ""
    netns: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)  # cluster cgroup roots
    pids: list[tuple[int, int]] = field(default_factory=list)  # (pid, start time)
    created: float = field(default_factory=time.time)


class StateDir:
    """One cluster's directory, locked by its owner."""

    def __init__(self, root: Path, name: str, record: Record) -> None:
        self.root, self.path, self.record = root, root / name, record
        # A block's arms deploy from threads at once: each change to the record and its write
        # happen under one lock (two writers of one tmp file lost it: FileNotFoundError).
        self._mutex = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            raise FileExistsError(f"cluster {name} already exists in {root}")
        # Build and lock it under a hidden name first: a concurrent `clean` must never see
        # an unlocked cluster directory that is still being born.
        tmp = root / f".new-{name}-{os.getpid()}"
        tmp.mkdir(mode=0o755)
        self._lock = os.open(tmp / "lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        tmp.rename(self.path)
        self.save()

    @property
    def marker(self) -> str:
        return f"{self.root.resolve()}:{self.record.name}"

    def save(self) -> None:
        with self._mutex:
            self._write()

    def _write(self) -> None:
        tmp = self.path / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self.record), indent=1))
        tmp.replace(self.path / "state.json")

    def add(self, *, netns: str | None = None, pid: int | None = None) -> None:
        started = 0 if pid is None else (start_time(pid) or 0)
        with self._mutex:
            if netns is not None:
                self.record.netns.append(netns)
            if pid is not None:
                self.record.pids.append((pid, started))
            self._write()

    def forget(self, *, netns: str | None = None, pid: int | None = None) -> None:
        with self._mutex:
            if netns is not None and netns in self.record.netns:
                self.record.netns.remove(netns)
            if pid is not None:
                self.record.pids = [p for p in self.record.pids if p[0] != pid]
            self._write()

    def close(self, remove: bool = True) -> None:
        """Release the lock (and delete the directory when the cluster is gone)."""
        if remove:
            remove_tree(self.path)
        os.close(self._lock)


def remove_tree(path: Path) -> None:
    """``shutil.rmtree`` that also removes an overlay's leftovers: overlayfs makes its workdir's
    inner ``work/`` mode 000, which root may enter but a rootless cluster's user may not (its
    owner): such a directory is given back its owner's rights and removed. Never raises."""

    def again(func: object, p: str, exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(p, 0o700)
            shutil.rmtree(p, ignore_errors=True)

    shutil.rmtree(path, onerror=again)


@dataclass(frozen=True)
class Entry:
    """A cluster found in a state root, as ``ztfl cluster status`` lists it."""

    name: str
    path: Path
    record: Record | None
    live: bool  # its owner still holds the lock

    @property
    def stale(self) -> bool:
        return not self.live and not (self.record and self.record.detached)


def _load(path: Path) -> Record | None:
    try:
        data = json.loads((path / "state.json").read_text())
    except (OSError, ValueError):
        return None
    data["pids"] = [tuple(p) for p in data.get("pids", [])]
    return Record(**data)


@contextlib.contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    try:
        fd = os.open(path / "lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        yield True  # a directory without a lock never got as far as creating anything
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def entries(root: Path | None = None) -> list[Entry]:
    root = root or default_root()
    if not root.is_dir():
        return []
    out = []
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.name.startswith("."):
            with _try_lock(p) as free:
                out.append(Entry(p.name, p, _load(p), live=not free))
    return out


def marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries ``MARKER=marker`` (pod processes of one cluster)."""
    needle = f"{MARKER}={marker}".encode()
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            env = Path(f"/proc/{d}/environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            out.append(int(d))
    return out


def _kill(pid: int, start: int | None) -> None:
    if start is not None and start_time(pid) != start:
        return  # gone, or the PID now belongs to someone else
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # pods run in their own session: pgid == pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def purge(path: Path, *, force: bool = False) -> list[str]:
    """Remove what the cluster recorded at ``path`` lists; return what was removed.

    Refuses (returns []) while a live owner holds the lock, unless ``force``. A namespace that
    cannot be deleted is listed as ``NOT REMOVED netns <name> (<why>)`` and the record stays,
    listing only what is left, so the next clean retries it instead of forgetting it.
    """
    with _try_lock(path) as free:
        if not free and not force:
            return []
        rec = _load(path)
        removed: list[str] = []
        if rec is not None:
            marker = f"{path.parent.resolve()}:{rec.name}"
            for _ in range(3):  # pods may fork while being killed
                for pid, start in rec.pids:
                    _kill(pid, start)
                for pid in marked_pids(marker):
                    _kill(pid, None)
            for root in rec.cgroups:
                cgroups.remove_tree(Path(root))
                removed.append(f"cgroup {root}")
            for d in scratch_dirs(rec.name):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(f"dir {d}")
            left: list[str] = []
            if rec.mode == "root":
                ip = tool("ip")
                for ns in reversed(rec.netns):
                    r = subprocess.run([ip, "netns", "del", ns], capture_output=True, text=True)
                    if r.returncode == 0:
                        removed.append(f"netns {ns}")
                    elif (NETNS_DIR / ns).exists():
                        left.append(ns)
                        removed.append(f"{LEFT} netns {ns} ({r.stderr.strip()})")
            # rootless namespaces live only as long as the processes killed above
            if left:
                # keep the record of what is still there, so the next clean tries again
                rec.netns, rec.pids, rec.cgroups = left, [], []
                tmp = path / "state.json.tmp"
                tmp.write_text(json.dumps(asdict(rec), indent=1))
                tmp.replace(path / "state.json")
                return removed
        remove_tree(path)
        return removed


SCRATCH = ("ztfl-netem-{name}-node-*", "ztfl-capture-{name}-*")


def scratch_dirs(name: str) -> list[Path]:
    """The temporary directories a cluster's processes made outside its state directory (a
    delay line's work directory, a wire capture's), by the names that carry the cluster's:
    a SIGKILLed harness leaves them for the purge of its record."""
    tmp = Path(tempfile.gettempdir())
    return sorted(d for pat in SCRATCH for d in tmp.glob(pat.format(name=name)) if d.is_dir())


def clean_stale(root: Path | None = None) -> dict[str, list[str]]:
    """Purge every stale cluster under ``root``; return what was removed, by cluster."""
    return {e.name: purge(e.path) for e in entries(root) if e.stale}
