"""A container command for the zygote tests: reports what its process sees, as JSON on stdout.

``python -m ztlc_zygote_probe report`` prints one line and exits 3; ``... wait`` prints it and
waits for a signal (SIGTERM: exit 143); ``... stdin`` prints its standard input upper-cased and
"done" on stderr, and exits 0. ``imported_in`` is the PID of the process that imported
the module first: the zygote's when the container was forked from it.
"""

import errno
import json
import os
import signal
import socket
import sys
import time

IMPORTED_IN = os.getpid()


def report() -> dict[str, object]:
    first = sys.modules.get("ztlc_zygote_probe")
    return {
        "pid": os.getpid(),
        "imported_in": getattr(first, "IMPORTED_IN", os.getpid()),
        "hostname": socket.gethostname(),
        "ns": {n: os.readlink(f"/proc/self/ns/{n}") for n in ("net", "mnt", "uts")},
        "cgroup": open("/proc/self/cgroup").read(),
        "resolv": open("/etc/resolv.conf").read(),
        "env": os.environ.get("ZTLC_PROBE"),
        "argv": sys.argv[1:],
        "cwd": os.getcwd(),
        "status": {k: " ".join(v.split()) for k, _, v in
                   (ln.partition(":") for ln in open("/proc/self/status"))
                   if k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd",
                            "CapAmb", "NoNewPrivs", "Seccomp")},
        "root_write": root_write(),
        "lazy_import": lazy_import(),
    }


def lazy_import() -> str:
    """A standard module imported now, from disk (the zygote never imported it)."""
    try:
        import colorsys  # noqa: F401
    except ImportError as e:
        return f"{type(e).__name__}: {e}"
    return "ok"


def root_write() -> str:
    try:
        os.close(os.open("/", os.O_TMPFILE | os.O_WRONLY, 0o600))
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, "?")
    return "ok"


if __name__ == "__main__":
    if sys.argv[1] == "stdin":
        print(sys.stdin.read().upper(), end="")
        print("done", file=sys.stderr)
        sys.exit(0)
    print(json.dumps(report()), flush=True)
    if sys.argv[1] == "wait":
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        while True:
            time.sleep(1)
    sys.exit(3)
