"""The delay line's C data plane (``dataplane.c``): built once per source, loaded with ctypes.

Why ctypes and a build at first use, not a CPython extension: the package stays pure Python
(no compiler at install time, one wheel for every interpreter), and a ctypes call releases the
GIL, so the C loop runs in a Python thread while the main thread keeps the heartbeat. The
library is built with the system compiler against libnetfilter_queue (Debian:
``libnetfilter-queue-dev``, which ``scripts/bootstrap`` installs) into a cache directory keyed
by the source's hash; a machine without either falls back to the Python loop, and the delay
line's status says which ran and why (``transport.dataplane``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("dataplane.c")
CFLAGS = ("-O2", "-Wall", "-Wextra", "-shared", "-fPIC")
LIBS = ("-lnetfilter_queue", "-lnfnetlink", "-lpthread")


class DataPlaneUnavailable(RuntimeError):
    """The C data plane cannot be built or loaded here; the message says why."""


class Counters(ctypes.Structure):
    """``dl_counters`` of dataplane.c, field for field."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "seen", "passed", "held_total", "held_now", "max_held", "dropped_loss", "released_now",
        "stamped", "underruns", "dropped_rate", "unparsed")] + [
        (name, ctypes.c_double) for name in ("late_sum_s", "late_max_s", "early_max_s")]


def cache_dir() -> Path:
    """Where built libraries are kept: ``$ZTFL_CACHE_DIR``, else ``$XDG_CACHE_HOME/ztfl``,
    else ``~/.cache/ztfl``."""
    if os.environ.get("ZTFL_CACHE_DIR"):
        return Path(os.environ["ZTFL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ztfl"


def library_path() -> Path:
    """The built library for this source and these flags (built now if missing)."""
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + " ".join(CFLAGS + LIBS).encode()).hexdigest()[:16]
    out = cache_dir() / f"ztfl-dataplane-{key}.so"
    if out.exists():
        return out
    cc = os.environ.get("CC", "cc")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out.parent)
        os.close(fd)
    except OSError as e:
        raise DataPlaneUnavailable(f"cache directory {out.parent}: {e.strerror}") from e
    try:
        r = subprocess.run([cc, *CFLAGS, "-o", tmp, str(SOURCE), *LIBS],
                           capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        os.unlink(tmp)
        raise DataPlaneUnavailable(f"compiler {cc}: {e}") from e
    if r.returncode != 0:
        os.unlink(tmp)
        first = (r.stderr.strip().splitlines() or ["no output"])[0]
        raise DataPlaneUnavailable(f"{cc} failed on {SOURCE.name}: {first}")
    os.replace(tmp, out)  # atomic: a concurrent build of the same source is harmless
    return out


_LIB: ctypes.CDLL | None = None


def load() -> ctypes.CDLL:
    """The loaded library, with its functions' signatures declared."""
    global _LIB
    if _LIB is not None:
        return _LIB
    path = library_path()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise DataPlaneUnavailable(f"loading {path}: {e}") from e
    p, i, d, u64p = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.POINTER(ctypes.c_uint64)
    sigs: dict[str, tuple[object, list[object]]] = {
        "dl_new": (p, [i, d, d]),
        "dl_error": (ctypes.c_char_p, [p]),
        "dl_class_init": (None, [p, i, i, i, i]),
        "dl_class_config": (None, [p, i, d, i, i, i, ctypes.POINTER(ctypes.c_double), i,
                                     ctypes.POINTER(ctypes.c_uint8), i, d, ctypes.c_uint64, i]),
        "dl_set_batch": (None, [p, i]),
        "dl_space": (i, [p, i, i]),
        "dl_feed_delay": (i, [p, i, ctypes.POINTER(ctypes.c_double), i]),
        "dl_feed_loss": (i, [p, i, ctypes.POINTER(ctypes.c_uint8), i]),
        "dl_snapshot": (None, [p, ctypes.POINTER(Counters), u64p]),
        "dl_frame_bytes": (d, [ctypes.c_char_p, i, i]),
        "dl_admit": (d, [p, i, d, ctypes.c_char_p, i]),
        "dl_open": (i, [p, i]),
        "dl_run": (i, [p, i, i]),
        "dl_stop": (None, [p]),
        "dl_low_fd": (i, [p]),
        "dl_low_reset": (None, [p]),
        "dl_close": (None, [p]),
        "dl_ring_size": (i, []),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    _LIB = lib
    return lib
