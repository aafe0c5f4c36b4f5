"""``python -m k8s_fixtures.posture``: what a container's processes may do, seen from inside.

The SEC3 proofs (:mod:`k8s_fixtures.proofs.hardening`) exec it in a running container (an
exec runs with the container's user, capabilities and seccomp filter, on Kubernetes as on the
local backend) and judge the one JSON line it prints:

* ``processes``: every process of the container (those in this process's cgroups, as an exec
  is, unless its parent is there too, or sharing its mount namespace; the probe included)
  with its user and group ids (real, effective, saved, filesystem), capability sets,
  no_new_privs and seccomp mode, from ``/proc/<pid>/status``. Both ``cgroup`` and
  ``status`` may be read for any process, so a process with more rights than the probe
  (whose mount namespace it may not read) is seen;
* ``token``: whether a ServiceAccount token is mounted where the kubelet puts it;
* ``root_write``: an attempt to create an (unnamed, ``O_TMPFILE``) file in ``/``: ``EROFS``
  means a read-only root filesystem, success a writable one (nothing is left behind);
* ``api``: where an API server is announced (``KUBERNETES_SERVICE_HOST``), the HTTP status of
  listing the namespace's pods with the mounted token, if any, else anonymously.

Standard library only, so it starts fast in any container of the image.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import ssl
import urllib.error
import urllib.request
from typing import Any

TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_FIELDS = {"Name": "name", "Uid": "uid", "Gid": "gid", "CapInh": "cap_inh", "CapPrm": "cap_prm",
           "CapEff": "cap_eff", "CapBnd": "cap_bnd", "CapAmb": "cap_amb",
           "NoNewPrivs": "no_new_privs", "Seccomp": "seccomp"}


def status(pid: str) -> dict[str, Any]:
    """The fields of ``/proc/<pid>/status`` the proofs judge (ids as ints, sets as hex)."""
    out: dict[str, Any] = {"pid": int(pid)}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in _FIELDS:
                parts = value.split()
                if key in ("Uid", "Gid"):
                    out[_FIELDS[key]] = [int(p) for p in parts]
                elif key in ("NoNewPrivs", "Seccomp"):
                    out[_FIELDS[key]] = int(parts[0])
                else:
                    out[_FIELDS[key]] = parts[0] if parts else ""
    return out


def _cgroup(pid: str) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def _same_mnt(pid: str, mine: str) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt") == mine
    except OSError:  # another user's, or one with rights this probe lacks: cgroups tell
        return False


def _own_cgroup() -> str | None:
    """This process's cgroups, when they are the container's own: not when the process that
    started the probe is in them too (a local cluster without cgroups leaves an exec in the
    harness's, shared with everything the harness runs)."""
    group, parent = _cgroup("self"), str(os.getppid())
    try:
        return None if parent != "0" and _cgroup(parent) == group else group
    except OSError:  # the parent is gone or outside this PID namespace
        return group


def processes() -> list[dict[str, Any]]:
    """Every process in this process's cgroups or mount namespace (a container's own)."""
    mine, group = os.readlink("/proc/self/ns/mnt"), _own_cgroup()
    found = []
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        try:
            if (group is not None and _cgroup(pid) == group) or _same_mnt(pid, mine):
                found.append(status(pid))
        except OSError:  # gone meanwhile
            continue
    return found


def root_write() -> dict[str, Any]:
    try:
        fd = os.open("/", os.O_TMPFILE | os.O_WRONLY, 0o600)
    except OSError as e:
        name = errno.errorcode.get(e.errno or 0, str(e.errno))
        return {"ok": False, "errno": name, "error": e.strerror}
    os.close(fd)
    return {"ok": True, "errno": None, "error": None}


def api(namespace: str) -> dict[str, Any]:
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        return {"present": False}
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    req = urllib.request.Request(f"https://{host}:{port}/api/v1/namespaces/{namespace}/pods")
    token = os.path.join(TOKEN_DIR, "token")
    if os.path.exists(token):
        with open(token) as f:
            req.add_header("Authorization", f"Bearer {f.read().strip()}")
    # only the status is judged (is the caller let in?), so the server is not verified
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return {"present": True, "status": r.status, "error": None}
    except urllib.error.HTTPError as e:
        return {"present": True, "status": e.code, "error": None}
    except (OSError, ValueError) as e:
        return {"present": True, "status": None, "error": str(e)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m k8s_fixtures.posture", description=__doc__)
    ap.add_argument("--namespace", default="default", help="whose pods to list via the API")
    a = ap.parse_args(argv)
    print(json.dumps({
        "self": os.getpid(),
        "processes": processes(),
        "token": {"path": os.path.join(TOKEN_DIR, "token"),
                  "present": os.path.exists(os.path.join(TOKEN_DIR, "token"))},
        "root_write": root_write(),
        "api": api(a.namespace),
    }), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
