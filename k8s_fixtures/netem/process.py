"""Start, reconfigure, watch and stop one delay-line process in a node namespace.

The parent side of :mod:`.delayline`: writes its JSON config, launches it with
``ip netns exec`` (which execs, so the PID we hold is the delay line's), waits for it to bind its
queues, and reads its heartbeat/status file. Liveness = the process exists and its heartbeat is
fresh; both are checked because a wedged process would keep its PID but stop beating.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from k8s_fixtures.proc import die_with_parent

from .models import ClassSpec

PKG_ROOT = Path(__file__).resolve().parent.parent.parent  # the directory holding k8s_fixtures


class DelayLineError(RuntimeError):
    """The delay line failed to start, reconfigure or stop; the message says which and why."""


def window_config(value: str) -> dict[str, float]:
    """The delay line's batch window fixed by ``ZTFL_DELAYLINE_WINDOW_US`` (microseconds,
    for benchmarks that compare windows), or nothing: the delay line's default (1 ms)."""
    if not value.strip():
        return {}
    try:
        us = float(value)
    except ValueError:
        us = float("nan")
    if not 0 < us <= 1e6:
        raise ValueError(f"ZTFL_DELAYLINE_WINDOW_US: {value!r} is not a window in "
                         "microseconds (0 < window <= 1000000)")
    return {"batch_us": us}


@dataclass(frozen=True)
class ClassConfig:
    """One queue of the delay line: its number, a label for reports, its length and spec;
    ``gso``: GSO super-packets are queued whole (else the kernel segments them first)."""

    queue: int
    label: str
    max_len: int
    spec: ClassSpec
    gso: bool = True


@dataclass(frozen=True)
class Liveness:
    """Whether the delay line is alive, and if not, why."""

    alive: bool
    reason: str
    pid: int | None
    heartbeat_age_s: float | None
    status: dict[str, Any]


class DelayLineProcess:
    """One delay line: ``start()``, ``reconfigure()``, ``liveness()``, ``stop()``."""

    def __init__(self, node_netns: str, classes: list[ClassConfig], workdir: Path, *,
                 heartbeat_s: float = 0.2, stale_after_s: float = 2.0) -> None:
        self.node_netns = node_netns
        self.classes = {c.queue: c for c in classes}
        self.workdir = workdir
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.config_path = workdir / "delayline.json"
        self.status_path = workdir / "delayline.status.json"
        self.log_path = workdir / "delayline.log"
        self.generation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_status: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def _write_config(self) -> None:
        cfg = {"status_path": str(self.status_path), "heartbeat_s": self.heartbeat_s,
               "parent_pid": os.getpid(), "generation": self.generation,
               "rt_priority": int(os.environ.get("ZTFL_DELAYLINE_RT", "1")),
               "dataplane": os.environ.get("ZTFL_DELAYLINE_DATAPLANE", "auto"),
               **window_config(os.environ.get("ZTFL_DELAYLINE_WINDOW_US", "")),
               "classes": [{"queue": c.queue, "label": c.label, "max_len": c.max_len,
                            "gso": c.gso, "spec": asdict(c.spec)}
                           for c in self.classes.values()]}
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cfg, indent=1))
        os.replace(tmp, self.config_path)

    def read_status(self) -> dict[str, Any]:
        try:
            st: dict[str, Any] = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}
        self.last_status = st
        return st

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log_path.read_text().strip().splitlines()[-3:])
        except OSError:
            return ""

    def start(self, timeout_s: float = 15.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PKG_ROOT), env.get("PYTHONPATH"))
                                            if p)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.node_netns, sys.executable, "-m",
                 "k8s_fixtures.netem.delayline", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DelayLineError(f"delay line in {self.node_netns} exited with "
                                     f"{self.proc.returncode} at start: {self._log_tail()}")
            st = self.read_status()
            if st.get("ready") and st.get("pid") == self.proc.pid:
                return
            time.sleep(0.02)
        self.stop()
        raise DelayLineError(f"delay line in {self.node_netns} not ready after {timeout_s} s: "
                             f"{self._log_tail()}")

    def reconfigure(self, specs: dict[int, ClassSpec], timeout_s: float = 10.0) -> None:
        """Swap class parameters (same queues) and wait until the process confirms it."""
        unknown = sorted(set(specs) - set(self.classes))
        if unknown:
            raise DelayLineError(f"reconfigure: queues {unknown} are not bound")
        for q, spec in specs.items():
            c = self.classes[q]
            self.classes[q] = ClassConfig(c.queue, c.label, c.max_len, spec, c.gso)
        self.generation += 1
        self._write_config()
        if self.proc is None or self.proc.poll() is not None:
            raise DelayLineError("reconfigure: the delay line is not running")
        os.kill(self.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            st = self.read_status()
            if st.get("error"):
                raise DelayLineError(f"reconfigure: {st['error']}")
            if st.get("generation") == self.generation:
                return
            if self.proc.poll() is not None:
                raise DelayLineError("reconfigure: the delay line died")
            time.sleep(0.02)
        raise DelayLineError(f"reconfigure: generation {self.generation} not confirmed in "
                             f"{timeout_s} s")

    def liveness(self) -> Liveness:
        if self.proc is None:
            return Liveness(False, "not started", None, None, {})
        st = self.read_status()
        rc = self.proc.poll()
        if rc is not None:
            return Liveness(False, f"delay line process {self.proc.pid} exited with {rc}",
                            self.proc.pid, None, st)
        if not st:
            return Liveness(False, "no status file", self.proc.pid, None, st)
        age = time.time() - float(st.get("heartbeat", 0))
        if age > self.stale_after_s:
            return Liveness(False, f"heartbeat is {age:.1f} s old (limit {self.stale_after_s} s)",
                            self.proc.pid, age, st)
        if st.get("error"):
            return Liveness(False, str(st["error"]), self.proc.pid, age, st)
        return Liveness(True, "", self.proc.pid, age, st)

    def stop(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """SIGTERM (held packets are released), then SIGKILL; return the last status."""
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout_s)
        return self.read_status() or self.last_status
