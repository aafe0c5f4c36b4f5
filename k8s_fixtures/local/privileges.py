"""How the local backend gets the right to make namespaces: as root, or rootless in a user ns.

As root, commands run directly. As an ordinary user, one long-lived "holder" process owns a
user + network + mount namespace (``unshare --user --map-root-user --net --mount``) with a
private tmpfs on ``/run``; every command of the backend is then run through
``nsenter --target HOLDER`` so it sees the same namespaces. Where neither works,
:func:`detect` raises :class:`PrivilegeError` with one line saying what is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from typing import Literal

from k8s_fixtures.cluster import PrivilegeError

Mode = Literal["root", "rootless"]
TOOLS = ("ip", "nsenter", "unshare", "dnsmasq")
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAP_SYS_ADMIN = 21


def tool(name: str) -> str:
    """Absolute path of a system tool (also looking in sbin, often absent from users' PATH)."""
    path = shutil.which(name) or shutil.which(name, path=_SBIN_PATH)
    if path is None:
        raise PrivilegeError(f"'{name}' is not installed (needed by the local cluster backend)")
    return path


def _has_cap(cap: int) -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def detect(mode: Mode | None = None) -> Mode:
    """The mode this process can use (``root`` preferred), or PrivilegeError saying why none."""
    for t in TOOLS:
        tool(t)
    if mode in (None, "root") and os.geteuid() == 0 and _has_cap(CAP_SYS_ADMIN):
        return "root"
    if mode == "root":
        raise PrivilegeError("root mode needs euid 0 with CAP_SYS_ADMIN (to create namespaces)")
    proc = subprocess.run(
        [tool("unshare"), "--user", "--map-root-user", "--net", "--mount", "true"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode
        raise PrivilegeError(
            f"not root, and unprivileged user namespaces are unavailable ({err}); "
            "run as root or enable them (sysctl user.max_user_namespaces)"
        )
    return "rootless"


class Holder:
    """The process owning a rootless cluster's user, network and mount namespaces."""

    def __init__(self) -> None:
        script = ("mount -t tmpfs tmpfs /run && mkdir /run/netns && echo ready"
                  " && exec sleep infinity")
        self.proc = subprocess.Popen(
            [tool("unshare"), "--user", "--map-root-user", "--net", "--mount", "sh", "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            err = self.proc.stderr.read().strip() if self.proc.stderr else ""
            self.stop()
            raise PrivilegeError(f"cannot set up the rootless namespace: {err or line}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def prefix(self) -> list[str]:
        """Run a command inside the holder's namespaces, as root of its user namespace.

        ``--preserve-credentials``: our own uid already maps to root in there, and nsenter's
        setgroups() would be refused (``--map-root-user`` denies it)."""
        return [tool("nsenter"), f"--target={self.pid}", "--user", "--mount", "--net",
                "--preserve-credentials", "--"]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
