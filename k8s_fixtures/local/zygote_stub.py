"""A container's main process when the cluster's zygote runs its command (see :mod:`.zygote`).

Run by the launcher, inside the pod's namespaces and cgroups, as
``python -I -S zygote_stub.py CONN_FD CGROUP_PROCS_JSON SECURITY_JSON -- ARGV...`` (standard
library only; ``CONN_FD`` is a connection to the zygote the supervisor made and the launcher
passed on; ``SECURITY_JSON`` the container's security context, which the worker applies).
It asks the zygote to fork ``ARGV`` into this container, relays the signals it gets to that
worker, and exits as the worker exited (the same code, or killed by the same signal). When the
zygote cannot be asked (the connection fails, a refusal), it execs ``ARGV`` itself: the
container then runs exactly as without a zygote, and its log says why.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys
import time

RELAYED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2)


def _fallback(argv: list[str], why: str) -> None:
    print(f"ztfl-zygote: {why}; exec {argv[0]}", file=sys.stderr, flush=True)
    os.execvp(argv[0], argv)


def main(conn_fd: int, cgroup_procs: list[str], security: dict[str, object],
         argv: list[str]) -> None:
    s = socket.socket(fileno=conn_fd)
    os.set_inheritable(conn_fd, False)
    own = [os.open(f"/proc/self/ns/{n}", os.O_RDONLY | os.O_CLOEXEC)
           for n in ("net", "mnt", "uts")]
    fds = [0, 1, 2, *own, os.pidfd_open(os.getpid())]
    req = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(),
           "cgroup_procs": cgroup_procs, "security": security}
    try:
        s.sendmsg([json.dumps(req).encode()],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        anc_size = socket.CMSG_SPACE(array.array("i").itemsize)
        msg, anc, _, _ = s.recvmsg(4096, anc_size)
    except OSError as e:
        _fallback(argv, f"the zygote cannot be asked ({e.strerror})")
    for fd in fds[3:]:
        os.close(fd)
    if not msg.startswith(b"pid "):
        _fallback(argv, f"the zygote refused: {msg.decode(errors='replace') or 'closed'}")
    worker = array.array("i", anc[0][2][: array.array("i").itemsize])[0]
    for sig in RELAYED:
        signal.signal(sig, lambda n, _f: signal.pidfd_send_signal(worker, n))
    status = b""
    while not status:
        try:
            status = s.recv(4096)
            break
        except InterruptedError:
            continue
    kind, _, value = status.decode().partition(" ")
    if kind == "signal":
        died_of = int(value)
        signal.signal(died_of, signal.SIG_DFL)
        os.kill(os.getpid(), died_of)
        time.sleep(1)
    os._exit(int(value) if kind == "exit" else 128)


if __name__ == "__main__":
    sep = sys.argv.index("--")
    main(int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[sep + 1:])
