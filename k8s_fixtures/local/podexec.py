"""How a command runs in a running container, as ``kubectl exec`` runs it: one of the
container's processes, in its network, mount and UTS namespaces, its cgroups and working
directory, confined as its security context says.

Two ways, the same result (``tests/k8s_fixtures/local/test_local_zygote.py`` compares them):
``python -m MODULE`` of a module a zygote pre-imported, with the container's environment, is
forked from that zygote (:meth:`.zygote.Zygote.exec`: no interpreter start, no imports; the
proofs' probes run so); anything else, or what a zygote declines before it runs, goes through
``nsenter`` and :mod:`.confine` run by a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from k8s_fixtures.cluster import ExecResult
from k8s_fixtures.local.privileges import tool
from k8s_fixtures.local.zygote import Zygote

CONFINE = Path(__file__).with_name("confine.py")  # confines an exec as its container


def forked(zygotes: Sequence[Zygote], pidfd: int, memory_limited: bool,
           cgroup_procs: Sequence[str], security: Mapping[str, Any], env: Mapping[str, str],
           argv: list[str], *, timeout: float, input: str | None) -> ExecResult | None:
    """The exec forked from the first zygote that serves it (:meth:`.zygote.Zygote.serves`),
    into the container whose main process is ``pidfd``; None: none serves it, or the one
    asked declined before running anything. Raises TimeoutError."""
    z = next((z for z in zygotes if z.serves(argv, env, None, memory_limited)), None)
    if z is None:
        return None
    got = z.exec(pidfd, cgroup_procs, security, env, argv, timeout=timeout, input=input)
    if got is None:
        return None
    rc, out, err = got
    if rc == 126 and err.startswith("ztfl-zygote:"):  # declined before the command ran
        return None
    return ExecResult(rc, out, err)


def through_nsenter(wrap: Sequence[str], pid: int, working_dir: str | None,
                    cgroup_procs: Sequence[str], security: Mapping[str, Any],
                    env: Mapping[str, str], argv: list[str], *, timeout: float,
                    input: str | None) -> ExecResult:
    """The exec through ``nsenter --target=pid`` and the confining launcher. Raises
    TimeoutError."""
    # as on Kubernetes, an exec starts in the container's working directory (nsenter's
    # bare --wd: the target's; entering the mount namespace alone would leave it at /)
    wd = [f"--wd={working_dir}"] if working_dir else ["--wd"]
    # the exec joins the container's cgroups and runs as confined as the container (the
    # source passed: the container may not see this checkout)
    fds = [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in cgroup_procs]
    cmd = [*wrap, tool("nsenter"), f"--target={pid}", "--net", "--mount", "--uts",
           *wd, "--", sys.executable, "-I", "-S", "-c", CONFINE.read_text(),
           f"--cgroup-fds={','.join(map(str, fds))}", json.dumps(dict(security)), *argv]
    try:
        r = subprocess.run(cmd, env=dict(env), capture_output=True, text=True,
                           timeout=timeout, input=input, pass_fds=fds)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"timed out after {timeout}s") from None
    finally:
        for fd in fds:
            os.close(fd)
    return ExecResult(r.returncode, r.stdout, r.stderr)
