"""The pod supervisor: containers as process trees in the pod's network namespace.

Each container is started as ``ip netns exec NETNS python -I -S launch.py SPEC`` (the launcher
joins the container's cgroups, mounts its files and volumes, then execs the command), so the
child process is the container's main process. One monitor thread waits on all of them through
pidfds, records exit codes and termination reasons (``Completed``, ``Error``, ``OOMKilled``
from the cgroup's OOM-kill counter, ``StartError``) and restarts containers according to the
pod's ``restartPolicy`` with an exponential back-off (0.5 s doubling, capped at 10 s).

Init containers (``spec.initContainers``) run first, one at a time and in order, the Kubernetes
way: each must exit 0 before the next one (and finally every regular container) is started.
One that fails is restarted with the same back-off unless ``restartPolicy`` is ``Never``; then
the pod is ``Failed`` and its regular containers never start (they stay waiting with
``PodInitializing``, as on Kubernetes). Every container of a pod, init or regular, shares the
pod's network namespace and volumes; each has its own mount namespace (its mounts, resolv.conf,
hosts), which :meth:`Supervisor.exec` enters. ``image`` is ignored: commands come from this
machine's filesystem. Containers run as root with the harness's capabilities (so
``securityContext.capabilities.add`` such as ``NET_ADMIN`` needs nothing extra) unless their
``securityContext`` asks for less: then the launcher, and every exec into them, apply it
(:mod:`.confine`: user, group, capabilities dropped, no_new_privs, seccomp, read-only root).

Stopping a pod sends SIGTERM to the container's whole process tree (cgroup, else process
group), waits for the pod's grace period, then SIGKILLs what is left and removes the cgroups.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from k8s_fixtures.cluster import ClusterError, ContainerStatus, ExecResult, PodPhase, PodStatus
from k8s_fixtures.local import podexec
from k8s_fixtures.local.cgroups import ContainerCgroup
from k8s_fixtures.local.privileges import tool
from k8s_fixtures.local.topology import PodLink
from k8s_fixtures.local.zygote import Zygote, ZygoteDied
from k8s_fixtures.manifests import Container, PodSpec

LAUNCHER = Path(__file__).with_name("launch.py")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BACKOFF_MAX = 10.0


@dataclass
class ContainerRun:
    """One container of a pod and the state of its current (or last) process."""

    spec: Container
    env: dict[str, str]
    mounts: list[dict[str, object]]
    files: list[tuple[str, str]]  # (source, target) bind-mounted files (resolv.conf, hosts)
    spec_file: Path
    log: Path
    cgroup: ContainerCgroup | None
    proc: subprocess.Popen[bytes] | None = None
    pidfd: int = -1  # >= 0 while the process lives
    start_fd: int = -1  # read end of the launcher's close-on-exec pipe, until it execs
    state: Literal["waiting", "running", "terminated"] = "waiting"
    restart_count: int = 0
    exit_code: int | None = None
    reason: str | None = None  # of the last termination
    message: str | None = None
    waiting_reason: str | None = None  # ContainerCreating, CrashLoopBackOff
    started: float = 0.0
    next_start: float | None = None
    oom_seen: int = 0
    probe_at: float = 0.0
    probe_ok: bool = False
    init: bool = False  # an init container (runs to completion before the regular ones)

    @property
    def pid(self) -> int | None:
        """The container's main process once it runs the container command."""
        return self.proc.pid if self.proc is not None and self.state == "running" else None

    @property
    def live_pid(self) -> int | None:
        """The process (launcher or container command) while it lives."""
        return self.proc.pid if self.proc is not None and self.pidfd >= 0 else None


@dataclass
class PodRun:
    """A pod the supervisor runs."""

    namespace: str
    name: str
    labels: dict[str, str]
    spec: PodSpec
    link: PodLink
    dir: Path
    containers: list[ContainerRun]
    owner: str | None = None  # "Deployment/x" or "Job/x" for pods made from a template
    deleting: bool = False
    ready: dict[str, bool] = field(default_factory=dict)
    init: list[ContainerRun] = field(default_factory=list)  # spec.initContainers, in order
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def all_containers(self) -> list[ContainerRun]:
        return [*self.init, *self.containers]

    @property
    def initialized(self) -> bool:
        """Every init container has exited 0 (true when there are none)."""
        return all(c.state == "terminated" and c.exit_code == 0 for c in self.init)

    def next_init(self) -> ContainerRun | None:
        """The init container to run next (None once all have succeeded)."""
        return next((c for c in self.init if not (c.state == "terminated" and c.exit_code == 0)),
                    None)

    def phase(self) -> PodPhase:
        if not self.initialized:
            failed = any(c.state == "terminated" and c.exit_code != 0 for c in self.init)
            return "Failed" if failed and self.spec.restart_policy == "Never" else "Pending"
        cs = self.containers
        if any(c.state == "waiting" and c.exit_code is None for c in cs):
            return "Pending"
        policy = self.spec.restart_policy
        done = all(c.state == "terminated" for c in cs)
        if policy == "Never" and done:
            return "Succeeded" if all(c.exit_code == 0 for c in cs) else "Failed"
        if policy == "OnFailure" and done and all(c.exit_code == 0 for c in cs):
            return "Succeeded"
        return "Running"

    def status(self) -> PodStatus:
        def one(c: ContainerRun) -> ContainerStatus:
            return ContainerStatus(c.spec.name, c.state, self.ready.get(c.spec.name, False),
                                   c.restart_count, c.exit_code, c.reason, c.message,
                                   c.waiting_reason)

        containers = tuple(one(c) for c in self.containers)
        phase = self.phase()
        ready = phase == "Running" and all(s.ready for s in containers)
        return PodStatus(self.namespace, self.name, phase, self.link.ip, ready, containers,
                         dict(self.labels), tuple(one(c) for c in self.init))


def security_of(c: Container) -> dict[str, object]:
    """What the launcher and an exec apply of the container's security context (empty: run
    as root with the harness's capabilities, as before any context was honoured)."""
    return c.security.to_json() if c.security.confined else {}


def _listening(pid: int, port: int) -> bool:
    """Whether the process's network namespace has a TCP socket listening on ``port``."""
    want = f":{port:04X}"
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and f[1].endswith(want):
                return True
    return False


class Supervisor:
    """Starts, watches, restarts and stops pod containers."""

    def __init__(self, wrap: Sequence[str], on_pid: Callable[[int, bool], None]) -> None:
        self.wrap = list(wrap)
        self._on_pid = on_pid  # (pid, alive): lets the state directory track live processes
        self.zygotes: list[Zygote] = []  # each forks the containers it serves (.zygote)
        self._cond = threading.Condition(threading.RLock())
        self._pods: list[PodRun] = []
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._stopping = False
        self._thread = threading.Thread(target=self._monitor, name="ztfl-pods", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ starting

    def start(self, pod: PodRun) -> None:
        """Start the pod: its first init container, or (without any) every container."""
        with self._cond:
            self._pods.append(pod)
            for c in pod.containers:
                c.waiting_reason = "PodInitializing" if pod.init else "ContainerCreating"
            first = pod.next_init()
            for c in [first] if first is not None else pod.containers:
                self._spawn(pod, c)
        self._wake()

    def _advance(self, pod: PodRun) -> None:
        """After an init container succeeded: start the next one, or the regular containers.
        A start that fails is recorded as that container's StartError (never raises)."""
        nxt = pod.next_init()
        for c in [nxt] if nxt is not None else pod.containers:
            try:
                self._spawn(pod, c)
            except (OSError, ClusterError) as e:
                c.next_start, c.state, c.waiting_reason = None, "terminated", None
                c.reason, c.message, c.exit_code = "StartError", str(e), 128
                if nxt is not None:
                    return

    def _spawn(self, pod: PodRun, c: ContainerRun) -> None:
        if c.cgroup is not None:
            c.cgroup.create(c.spec.cpu_millis, c.spec.memory_bytes)
            c.oom_seen = c.cgroup.oom_kills()
        spec: dict[str, object] = {
            "argv": list(c.spec.argv), "env": c.env, "cwd": c.spec.working_dir,
            "hostname": pod.name, "mounts": c.mounts, "files": c.files,
            "scratch": str(pod.dir / "scratch" / f"{c.spec.name}.{c.restart_count}"),
            "security": security_of(c.spec),
        }
        fds = [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in
               (c.cgroup.procs_files if c.cgroup else [])]
        # The launcher holds the write end until its exec succeeds (it is close-on-exec then):
        # EOF on the read end is the moment the container command runs.
        start_r, start_w = os.pipe2(os.O_CLOEXEC)
        spec["cgroup_fds"] = fds
        zfds: list[int] = []  # a connection to a zygote, for the container's stub
        z = next((z for z in self.zygotes if not c.init and z.serves(
            c.spec.argv, c.env, c.spec.working_dir, c.spec.memory_bytes is not None)), None)
        if z is not None:
            conn = z.connect()
            if conn is not None:
                zfds.append(conn.detach())
                spec["argv"] = z.stub_argv(c.spec.argv, zfds[0],
                                           c.cgroup.procs_files if c.cgroup else [],
                                           security_of(c.spec))
        c.spec_file.write_text(json.dumps(spec))
        Path(f"{c.spec_file}.error").unlink(missing_ok=True)
        argv = [*self.wrap, tool("ip"), "netns", "exec", pod.link.netns,
                sys.executable, "-I", "-S", str(LAUNCHER), str(c.spec_file), str(start_w)]
        try:
            with open(c.log, "ab") as log:
                c.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=c.env,
                                          start_new_session=True,
                                          pass_fds=[*fds, *zfds, start_w])
        except BaseException:
            os.close(start_r)
            raise
        finally:
            for fd in [*fds, *zfds, start_w]:
                os.close(fd)
        c.pidfd = os.pidfd_open(c.proc.pid)
        c.start_fd = start_r
        self._on_pid(c.proc.pid, True)
        c.state, c.next_start, c.waiting_reason = "waiting", None, "ContainerCreating"
        c.probe_at, c.probe_ok = 0.0, False

    def _started(self, c: ContainerRun) -> None:
        """The start pipe is readable: EOF after a successful exec, b"E" and the reason if the
        launcher failed (then the exit, seen through the pidfd, records the StartError; the
        reason is written here when the launcher could not: a read-only root)."""
        data = os.read(c.start_fd, 4096)
        failed = data != b""
        err = Path(f"{c.spec_file}.error")
        if failed and len(data) > 1 and not err.exists():
            err.write_text(data[1:].decode(errors="replace"))
        os.close(c.start_fd)
        c.start_fd = -1
        if c.pidfd >= 0 and not failed:
            c.state, c.started, c.waiting_reason = "running", time.monotonic(), None

    # ------------------------------------------------------------------ watching

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _monitor(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                fds = {c.pidfd: (p, c) for p in self._pods for c in p.all_containers
                       if c.pidfd >= 0}
                starts = {c.start_fd: c for p in self._pods for c in p.all_containers
                          if c.start_fd >= 0}
                due = [c.next_start for p in self._pods for c in p.all_containers
                       if c.next_start is not None]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            ready, _, _ = select.select([self._wake_r, *fds, *starts], [], [], timeout)
            with self._cond:
                if self._wake_r in ready:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                for fd in ready:
                    if fd in starts:
                        self._started(starts[fd])
                for fd in ready:
                    if fd in fds:
                        self._exited(*fds[fd])
                now = time.monotonic()
                for p in self._pods:
                    for c in p.all_containers:
                        if c.next_start is not None and c.next_start <= now and not p.deleting:
                            c.restart_count += 1
                            try:
                                self._spawn(p, c)
                            except (OSError, ClusterError) as e:
                                c.next_start, c.state = None, "terminated"
                                c.reason, c.message = "StartError", str(e)
                self._cond.notify_all()

    def _exited(self, pod: PodRun, c: ContainerRun) -> None:
        assert c.proc is not None
        rc = c.proc.poll()
        if rc is None:
            return
        if c.start_fd >= 0:
            self._started(c)
        os.close(c.pidfd)
        c.pidfd = -1
        self._on_pid(c.proc.pid, False)
        # The container ends with its main process: whatever it left behind goes too.
        if c.cgroup is not None:
            c.cgroup.kill_all()
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(c.proc.pid, signal.SIGKILL)
        err = Path(f"{c.spec_file}.error")
        c.exit_code = 128 - rc if rc < 0 else rc
        c.message = None
        oom = c.cgroup is not None and c.cgroup.oom_kills() > c.oom_seen
        if err.exists():
            c.reason, c.message = "StartError", err.read_text().strip()
        elif oom and rc != 0:
            c.reason = "OOMKilled"
        else:
            c.reason = "Completed" if rc == 0 else "Error"
        c.state = "terminated"
        pod.ready[c.spec.name] = False
        policy = pod.spec.restart_policy
        if c.init:
            # Init containers are retried until they succeed unless the policy is Never
            # (Always behaves as OnFailure for them, as on Kubernetes).
            if pod.deleting:
                return
            if rc == 0:
                self._advance(pod)
            elif c.reason != "StartError" and policy != "Never":
                c.state, c.waiting_reason = "waiting", "CrashLoopBackOff"
                c.next_start = time.monotonic() + min(BACKOFF_MAX, 0.5 * 2 ** c.restart_count)
            return
        if not pod.deleting and c.reason != "StartError" and (
            policy == "Always" or (policy == "OnFailure" and rc != 0)
        ):
            c.state, c.waiting_reason = "waiting", "CrashLoopBackOff"
            c.next_start = time.monotonic() + min(BACKOFF_MAX, 0.5 * 2 ** c.restart_count)

    # ------------------------------------------------------------------ readiness

    def refresh_ready(self, pod: PodRun) -> None:
        """Evaluate readiness probes (tcpSocket: a listening socket; exec: exit code 0)."""
        now = time.monotonic()
        for c in pod.containers:
            pid, probe = c.pid, c.spec.readiness
            if pid is None:
                pod.ready[c.spec.name] = False
                continue
            if probe is None:
                pod.ready[c.spec.name] = True
                continue
            if now - c.started < probe.initial_delay:
                pod.ready[c.spec.name] = False
                continue
            if probe.tcp_port is not None:
                port = probe.tcp_port
                if isinstance(port, str):
                    port = next(p.port for p in c.spec.ports if p.name == port)
                pod.ready[c.spec.name] = _listening(pid, port)
            elif probe.command:
                if c.probe_at == 0.0 or now - c.probe_at >= probe.period:
                    c.probe_at, c.probe_ok = now, False
                    with contextlib.suppress(ClusterError):
                        c.probe_ok = self.exec(pod, c, list(probe.command), timeout=5).rc == 0
                pod.ready[c.spec.name] = c.probe_ok

    # ------------------------------------------------------------------ exec

    def exec(self, pod: PodRun, c: ContainerRun, argv: list[str], *, timeout: float,
             input: str | None = None) -> ExecResult:
        """``argv`` as one of the container's processes (:mod:`.podexec`)."""
        pid = c.pid
        if pid is None:
            raise ClusterError(f"pod {pod.namespace}/{pod.name}: container {c.spec.name} "
                               f"is not running ({c.state})")
        security, procs = security_of(c.spec), c.cgroup.procs_files if c.cgroup else []
        with self._cond:  # the monitor closes the pidfd when the process exits
            pidfd = os.dup(c.pidfd) if c.pidfd >= 0 and c.state == "running" else -1
        try:
            got = None if pidfd < 0 else podexec.forked(
                self.zygotes, pidfd, c.spec.memory_bytes is not None, procs, security, c.env,
                argv, timeout=timeout, input=input)
            if got is None:
                got = podexec.through_nsenter(self.wrap, pid, c.spec.working_dir, procs,
                                              security, c.env, argv, timeout=timeout,
                                              input=input)
        except (TimeoutError, ZygoteDied) as e:  # the worker (or nsenter) killed
            raise ClusterError(f"pod {pod.namespace}/{pod.name}: exec {argv[0]!r}: {e}") from None
        finally:
            if pidfd >= 0:
                os.close(pidfd)
        return got

    # ------------------------------------------------------------------ signals

    def signal(self, pod: PodRun, c: ContainerRun, sig: int) -> None:
        """Send ``sig`` to the container's main process only, through its pidfd (so a recycled
        PID can never be hit; pods share the host's PID namespace, so nothing here may name a
        process by number or pattern). The monitor then sees the exit, kills what the process
        left in its cgroup and applies the restart policy, as for any other exit."""
        with self._cond:
            if c.pid is None or c.pidfd < 0:
                raise ClusterError(f"pod {pod.namespace}/{pod.name}: container {c.spec.name} "
                                   f"is not running ({c.state})")
            try:
                signal.pidfd_send_signal(c.pidfd, sig)
            except ProcessLookupError:  # exited just now; the monitor records the exit
                pass
            except OSError as e:
                raise ClusterError(f"pod {pod.namespace}/{pod.name}: container "
                                   f"{c.spec.name}: signal {sig}: {e}") from None

    # ------------------------------------------------------------------ stopping

    def _signal(self, c: ContainerRun, sig: int) -> None:
        pid = c.live_pid
        if pid is None:
            return
        if c.cgroup is not None:
            c.cgroup.signal_all(sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    def stop(self, pods: Sequence[PodRun]) -> None:
        """Stop pods: SIGTERM, grace period, SIGKILL; remove their cgroups. Never raises."""
        if not pods:
            return
        with self._cond:
            for p in pods:
                p.deleting = True
                for c in p.all_containers:
                    c.next_start = None
                    self._signal(c, signal.SIGTERM)
            grace = max(p.spec.termination_grace for p in pods)

            def running() -> list[ContainerRun]:
                return [c for p in pods for c in p.all_containers if c.pidfd >= 0]

            self._wake()
            self._cond.wait_for(lambda: not running(), timeout=grace)
            for c in running():
                self._signal(c, signal.SIGKILL)
            if not self._cond.wait_for(lambda: not running(), timeout=5):
                for p in pods:  # the monitor is gone: reap here
                    for c in p.all_containers:
                        if c.pidfd >= 0 and c.proc is not None:
                            c.proc.wait(timeout=5)
                            self._exited(p, c)
            for p in pods:
                for c in p.all_containers:
                    if c.cgroup is not None:
                        c.cgroup.kill_all()
                        with contextlib.suppress(OSError):
                            c.cgroup.remove()
                if p in self._pods:
                    self._pods.remove(p)

    def close(self, *, keep_running: bool = False) -> None:
        """Stop everything and the monitor thread (``keep_running``: only stop watching)."""
        if not keep_running:
            self.stop(list(self._pods))
            for z in self.zygotes:
                z.stop()
        with self._cond:
            self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
