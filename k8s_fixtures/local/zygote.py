"""A zygote: one pre-imported Python process per cluster that forks containers' processes.

A pod's Python container pays ``import torch`` (~1.5 s idle, 5 s and more with six pods
starting on two cores) and keeps ~280 MB of private pages that import wrote. The zygote is
started once per cluster as ``python -m k8s_fixtures.local.zygote SOCKET MODULE...`` with the
containers' interpreter, working directory and Python environment; it imports the named
modules (by name: the platform still never imports the workload's code), then serves
requests on a Unix socket. Every fork shares those pages copy-on-write.

Isolation is the launcher's, unchanged: the container is started as before
(``ip netns exec NETNS python -I -S launch.py``: cgroups, hostname, resolv.conf, hosts,
mounts), and its command is :mod:`.zygote_stub` instead of ``python -m MODULE ...``. The stub
is the container's main process; it sends the zygote its stdin/stdout/stderr, its network,
mount and UTS namespaces (as file descriptors it opened itself), a pidfd of itself, its
environment, working directory and the container's cgroup files. The forked worker joins the
same cgroups, enters those namespaces (so it sees exactly the stub's mounts, hostname and
network), takes the descriptors, environment and directory, and runs the module as
``python -m`` does (``runpy``). Last, before any thread or any of the container's code, it
applies the container's security context (:func:`.confine.confine`: capabilities,
no_new_privs, seccomp, groups, user; the read-only root is the mount namespace's, already
made by the launcher) and checks that its credentials are now exactly the stub's (ids,
groups, every capability set, no_new_privs, seccomp mode: :func:`credentials`), or exits with
126 and says why. The stub relays signals to the worker and exits with its status; a
worker whose stub died kills itself. Whatever the stub cannot arrange (no zygote, a refused
request) ends in the stub exec'ing the original command: the container then starts as it
always did.

Which containers: the supervisor (:mod:`.pods`) uses it only for a regular container whose
command is ``<this interpreter> -m <preloaded module> ...``, with no working directory, no
memory limit (a fork's shared pages are charged to the zygote's cgroup, not the container's,
so a limit would not mean what it says), and the zygote's environment but for ``HOSTNAME``,
``HOME`` (the user's: ``/`` for a non-root ``runAsUser``) and ``TMPDIR`` (a writable volume
under a read-only root; the worker forgets :mod:`tempfile`'s cached choice). What was read at
import time, ``PYTHON*``, ``GRPC_*`` and the like, must be what the container asks for: the
FL server, with its gRPC log settings, is forked from a zygote of its own.

Execs (:meth:`Zygote.exec`, the proofs' probes): the same request, made by the harness for a
running container, with pipes for stdio and, in the stub's place, the container's namespaces
(opened from ``/proc``) and the pidfd of its main process: the worker joins the container's
cgroups, enters its namespaces and directory, applies its security context and checks its
credentials are exactly that process's, as for a container, or declines before anything runs
(the supervisor then execs through nsenter, as it does for every command no zygote serves).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import gc
import importlib
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from k8s_fixtures.local import confine

STUB = Path(__file__).with_name("zygote_stub.py")
READY_TIMEOUT = 120.0
MAX_REQUEST = 1 << 20
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWNET = 0x00020000, 0x04000000, 0x40000000
OWN_ENV = ("HOSTNAME", "HOME", "TMPDIR")  # a container's own; the rest must be the zygote's
N_FDS = 7  # stdin, stdout, stderr, net ns, mnt ns, uts ns, the stub's pidfd


def _same_env(env: Mapping[str, str], zygote_env: Mapping[str, str]) -> bool:
    """Whether a container's environment is the zygote's but for :data:`OWN_ENV` (read by
    nothing the zygote imports, or read again in the worker, which gets the container's):
    anything read while importing (PYTHON*, GRPC_*, OMP_*, ...) was read with the zygote's
    values."""
    def own(e: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in e.items() if k not in OWN_ENV}
    return own(env) == own(zygote_env)


class Zygote:
    """The harness's handle on one running zygote process."""

    def __init__(self, socket_path: Path, modules: Sequence[str], env: Mapping[str, str],
                 wrap: Sequence[str] = ()) -> None:
        self.socket_path = socket_path
        self.modules = tuple(modules)
        self.env = dict(env)
        self.python = sys.executable
        self.cwd = os.getcwd()
        socket_path.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [*wrap, self.python, "-m", "k8s_fixtures.local.zygote", str(socket_path),
             *self.modules], stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
            start_new_session=True)

    def serves(self, argv: Sequence[str], env: Mapping[str, str], working_dir: str | None,
               memory_limited: bool) -> bool:
        """Whether a container with this command may be forked by the zygote."""
        return (self.proc.poll() is None and len(argv) >= 3 and argv[0] == self.python
                and argv[1] == "-m" and argv[2] in self.modules and working_dir is None
                and not memory_limited and _same_env(env, self.env))

    def connect(self) -> socket.socket | None:
        """A connection to the zygote for one container (None: the zygote is not there).

        Made here, in the harness's mount namespace, and handed to the container's stub as
        an inherited descriptor: inside the pod the socket's path may be hidden or
        overlaid by the container's own mounts (a mountPath under ``/run``)."""
        if not self.wait_ready():
            return None
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(str(self.socket_path))
        except OSError:
            s.close()
            return None
        return s

    def stub_argv(self, argv: Sequence[str], conn_fd: int, cgroup_procs: Sequence[str],
                  security: Mapping[str, Any]) -> list[str]:
        """The container command that has the zygote run ``argv`` (over ``conn_fd``) with the
        container's ``security`` context (:func:`.pods.security_of`)."""
        return [self.python, "-I", "-S", str(STUB), str(conn_fd),
                json.dumps(list(cgroup_procs)), json.dumps(dict(security)), "--", *argv]

    def exec(self, pidfd: int, cgroup_procs: Sequence[str], security: Mapping[str, Any],
             env: Mapping[str, str], argv: Sequence[str], *, timeout: float,
             input: str | None = None) -> tuple[int, str, str] | None:
        """``argv`` forked into the running container whose main process is ``pidfd``, as
        :meth:`.pods.Supervisor.exec` runs a command there: its namespaces (opened here from
        ``/proc``), cgroups, working directory and ``security`` context, and the worker checks
        its credentials are that process's. Returns (exit code, stdout, stderr); None when the
        zygote cannot be asked or refuses (the caller execs as it would without one). Raises
        :class:`TimeoutError` after ``timeout`` seconds, and :class:`ZygoteDied` when the zygote
        ends meanwhile; the worker killed either way."""
        conn = self.connect()
        if conn is None:
            return None
        mine: list[int] = []  # descriptors to close here whatever happens
        kept: list[int] = []  # this side's ends of the pipes
        try:
            pid = _pid_of(pidfd)
            ns = [os.open(f"/proc/{pid}/ns/{n}", os.O_RDONLY | os.O_CLOEXEC)
                  for n in ("net", "mnt", "uts")]
            mine += ns
            cwd = os.readlink(f"/proc/{pid}/cwd")
            # still that process (alive after the opens): the PID named no other one meanwhile
            signal.pidfd_send_signal(pidfd, 0)
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            mine += [in_r, out_w, err_w]
            kept += [in_w, out_r, err_r]
            req = {"argv": list(argv), "env": dict(env), "cwd": cwd, "exec": True,
                   "cgroup_procs": list(cgroup_procs), "security": dict(security)}
            conn.sendmsg([json.dumps(req).encode()], [(
                socket.SOL_SOCKET, socket.SCM_RIGHTS,
                array.array("i", [in_r, out_w, err_w, *ns, pidfd]))])
            msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(array.array("i").itemsize))
        except OSError:
            msg, anc = b"", []
        for fd in mine:
            os.close(fd)
        if not msg.startswith(b"pid ") or not anc:
            for fd in kept:
                os.close(fd)
            conn.close()
            return None
        worker = array.array("i", anc[0][2][: array.array("i").itemsize])[0]
        try:
            return _exec_io(conn, worker, in_w, out_r, err_r, input, timeout)
        finally:
            os.close(worker)
            conn.close()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        """Until the zygote listens (True) or died / timed out (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            if self.socket_path.exists():
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.socket_path.unlink(missing_ok=True)


class ZygoteDied(RuntimeError):
    """The zygote ended while an exec it forked was running (:meth:`Zygote.exec`)."""


def _exec_io(conn: socket.socket, worker: int, in_w: int, out_r: int, err_r: int,
             input: str | None, timeout: float) -> tuple[int, str, str]:
    """Feed ``input``, gather stdout and stderr until both close and the zygote reports the
    worker's exit on ``conn``; SIGKILL the worker (its pidfd) at the deadline."""
    feeder = threading.Thread(target=_feed, args=(in_w, (input or "").encode()), daemon=True)
    feeder.start()
    out: list[bytes] = []
    err: list[bytes] = []
    pipes = {out_r: out, err_r: err}  # the ones still open
    status = b""
    deadline = time.monotonic() + timeout
    try:
        while pipes or not status:
            left = deadline - time.monotonic()
            if left <= 0:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(worker, signal.SIGKILL)
                raise TimeoutError(f"timed out after {timeout}s")
            watch = [*pipes, *([] if status else [conn.fileno()])]
            ready, _, _ = select.select(watch, [], [], left)
            for fd in ready:
                if fd != conn.fileno():
                    if chunk := os.read(fd, 65536):
                        pipes[fd].append(chunk)
                    else:
                        del pipes[fd]
                        os.close(fd)
                elif not (status := conn.recv(4096)):
                    # the zygote is gone, and the exit status with it; the command may have
                    # run in part, so nothing may run it again: end it and say why
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(worker, signal.SIGKILL)
                    raise ZygoteDied("the zygote died during the exec; the exec was killed")
    finally:
        for fd in pipes:
            os.close(fd)
        feeder.join(timeout=1)
    kind, _, value = status.decode().partition(" ")
    code = int(value) if kind == "exit" else -int(value)  # killed: -signal, as subprocess's
    return code, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace")


def _feed(fd: int, data: bytes) -> None:
    """The exec's stdin: ``data``, then EOF (a worker that does not read it: EPIPE, ignored)."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- the process

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, kind: int) -> None:
    if _libc.setns(fd, kind) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns({kind:#x}): {os.strerror(err)}")


CREDENTIALS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
               "NoNewPrivs", "Seccomp")


def credentials(pid: int) -> dict[str, str]:
    """What ``/proc/<pid>/status`` says of a process's rights (:data:`CREDENTIALS`)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in CREDENTIALS:
                out[key] = " ".join(value.split())
    return out


def _pid_of(pidfd: int) -> int:
    with open(f"/proc/self/fdinfo/{pidfd}") as f:
        for line in f:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    raise OSError(f"no Pid in the fdinfo of pidfd {pidfd}")


def _worker(req: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the container's process, run its module, never return."""
    code = 1
    try:
        os.setsid()
        for path in req["cgroup_procs"]:
            with open(str(path), "w") as f:
                f.write("0")
        stdio, (net, mnt, uts, stub) = fds[:3], fds[3:]
        _setns(net, CLONE_NEWNET)
        _setns(uts, CLONE_NEWUTS)
        _setns(mnt, CLONE_NEWNS)
        for fd in (net, mnt, uts):
            os.close(fd)
        os.chdir(str(req["cwd"]))
        for i, fd in enumerate(stdio):
            os.dup2(fd, i)
            os.close(fd)
        os.environ.clear()
        os.environ.update(req["env"])
        tempfile.tempdir = None  # chosen again, from the container's TMPDIR
        stub_pid = _pid_of(stub)
        # last, and before any thread: seccomp and no_new_privs hold for the calling thread
        security = dict(req.get("security") or {})
        try:
            if req.get("exec") and security.get("run_as_user"):
                # as confine.main does for an exec through nsenter: the user reaches the
                # interpreter (and the standard library it imports lazily) in a container
                # whose own command may be another program
                confine.reach(str(req["argv"][0]), security["run_as_user"],
                              security.get("run_as_group") or 0)
            confine.confine(security)
        except (confine.ConfineError, OSError) as e:
            print(f"ztfl-zygote: the container's security context: {e}", file=sys.stderr,
                  flush=True)
            os._exit(126)
        mine, theirs = credentials(os.getpid()), credentials(stub_pid)
        if mine != theirs:
            diff = {k: (mine.get(k), theirs.get(k)) for k in {*mine, *theirs}
                    if mine.get(k) != theirs.get(k)}
            print(f"ztfl-zygote: the forked process is not confined as its container's main "
                  f"process (field: (forked, main)): {diff}", file=sys.stderr, flush=True)
            os._exit(126)

        def orphaned() -> None:  # the container's main process is gone: so is the container
            select.select([stub], [], [])
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=orphaned, daemon=True).start()
        argv = [str(a) for a in req["argv"]]
        sys.argv = [argv[0], *argv[3:]]
        runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    except BaseException as e:  # the container's uncaught error, as python would print it
        import traceback

        traceback.print_exception(e)
        code = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _status_msg(status: int) -> bytes:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}".encode()
    return f"exit {os.waitstatus_to_exitcode(status)}".encode()


def serve(path: str, modules: Sequence[str]) -> None:
    """Import ``modules``, then fork a worker for every request on the socket ``path``."""
    sys.path[0] = os.getcwd()  # as ``python -m MODULE`` would have it, not this file's dir
    for m in modules:
        importlib.import_module(m)
    # Objects made so far are left out of every later collection: a collection writes to the
    # header of each object it scans, which would copy their pages into every worker.
    gc.freeze()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tmp = f"{path}.{os.getpid()}"
    lsock.bind(tmp)
    lsock.listen(64)
    os.rename(tmp, path)  # the path appears only once the zygote can serve
    conns: dict[int, socket.socket] = {}
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, the stub's conn)
    while True:
        waiting: list[Any] = [lsock, *conns, *children]
        ready, _, _ = select.select(waiting, [], [])
        for fd in ready:
            if fd is lsock:
                c, _ = lsock.accept()
                conns[c.fileno()] = c
            elif fd in children:
                pid, c = children.pop(fd)
                _, status = os.waitpid(pid, 0)
                os.close(fd)
                with contextlib.suppress(OSError):
                    c.send(_status_msg(status))
                c.close()
            elif fd in conns:
                c = conns.pop(fd)
                _request(c, lsock, conns, children)


def _request(c: socket.socket, lsock: socket.socket, conns: dict[int, socket.socket],
             children: dict[int, tuple[int, socket.socket]]) -> None:
    fds_arr = array.array("i")
    try:
        msg, anc, _, _ = c.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(N_FDS * fds_arr.itemsize))
    except OSError:
        c.close()
        return
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds_arr.frombytes(data[: len(data) - len(data) % fds_arr.itemsize])
    fds = list(fds_arr)
    try:
        req = json.loads(msg)
        if len(fds) != N_FDS or not isinstance(req, dict):
            raise ValueError(f"expected {N_FDS} descriptors and a JSON object")
    except ValueError as e:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):
            c.send(f"refused {e}".encode())
        c.close()
        return
    pid = os.fork()
    if pid == 0:
        lsock.close()
        for other in [*conns.values(), *(s for _, s in children.values())]:
            other.close()
        for pfd in children:
            os.close(pfd)
        c.close()
        _worker(req, fds)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    c.sendmsg([f"pid {pid}".encode()],
              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [pidfd]))])
    children[pidfd] = (pid, c)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:])
