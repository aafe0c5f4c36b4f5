"""The first program of every local pod container: set up its view of the machine, then exec.

Runs inside the pod's network namespace (``ip netns exec`` already gave it a private mount
namespace) as ``python -I -S launch.py SPEC.json START_FD``, so it uses the standard library
only and must not import the package. It joins the container's cgroups (through inherited file
descriptors), gives the container its own hostname, ``/etc/resolv.conf``, ``/etc/hosts`` and
volume mounts, applies its security context (:mod:`.confine`: read-only root, capabilities,
seccomp, user) and then execs the container command, so the supervisor's child process *is*
the container's main process.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import sys
from types import ModuleType

MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
CLONE_NEWUTS = 0x04000000
START_FD = -1  # write end of the supervisor's start pipe (argv[2])
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None) -> None:
    enc = [None if s is None else s.encode() for s in (src, dst, fstype, data)]
    if _libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} -> {dst}: {os.strerror(err)}")


def _bind(src: str, dst: str, read_only: bool) -> None:
    _mount(src, dst, None, MS_BIND, None)
    if read_only:
        _mount(None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)


def _source(path: str) -> str:
    """A name for ``path`` that survives later mounts over its parents (an O_PATH fd)."""
    return f"/proc/self/fd/{os.open(path, os.O_PATH | os.O_CLOEXEC)}"


def _existing_ancestor(path: str) -> str:
    anc = os.path.dirname(path)
    while not os.path.isdir(anc):
        anc = os.path.dirname(anc)
    return anc


def _depth(dst: str) -> int:
    """How deep the first mount for ``dst`` goes: the bind itself on an existing directory,
    else the overlay on its nearest existing ancestor."""
    return os.path.realpath(dst if os.path.isdir(dst) else _existing_ancestor(dst)).count("/")


def _make_path(path: str, scratch: str, overlaid: set[str]) -> None:
    """Make directory ``path`` exist in this mount namespace only.

    The nearest existing ancestor gets a private overlay (upper layer in ``scratch``, a path
    through an fd opened before any overlay, so it never lies on one), so the directory is
    created there and never on the machine's real filesystem. Below a directory already
    overlaid here it is simply created (callers go from the shallowest ancestor down: an
    overlay mounted later on a shallower one would cover the deeper ones and their mounts).
    """
    if os.path.isdir(path):
        return
    real = os.path.realpath(path)
    if any(real == o or real.startswith(o + "/") for o in overlaid):
        os.makedirs(path, exist_ok=True)
        return
    anc = _existing_ancestor(path)
    if anc == "/":
        raise OSError(f"mountPath {path}: no existing parent directory other than /")
    if os.path.realpath(anc) not in overlaid:
        layer = os.path.join(scratch, str(len(overlaid)))
        upper, work = os.path.join(layer, "upper"), os.path.join(layer, "work")
        os.makedirs(upper)
        os.makedirs(work)
        _mount("overlay", anc, "overlay", 0, f"lowerdir={anc},upperdir={upper},workdir={work}")
        overlaid.add(os.path.realpath(anc))
    os.makedirs(path, exist_ok=True)


def main(spec_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    # cgroup.procs files opened by the supervisor: ``ip netns exec`` has remounted /sys, so
    # the cgroup hierarchy is no longer visible here by path.
    for fd in spec.get("cgroup_fds", []):
        os.write(fd, b"0")
        os.close(fd)
    if _libc.unshare(CLONE_NEWUTS) == 0:
        name = spec["hostname"].encode()
        _libc.sethostname(name, len(name))
    # Open every source first: a mountPath's private overlay may cover the directory a
    # source lives in (the state directory under /run or /tmp), and a bind from the path
    # would then take the overlay's copy: an emptyDir would stop being shared.
    mounts = [(_source(m["src"]), m["dst"], bool(m.get("ro", False)))
              for m in sorted(spec.get("mounts", []), key=lambda m: _depth(m["dst"]))]
    files = [(_source(src), dst) for src, dst in spec.get("files", [])]
    os.makedirs(spec["scratch"], exist_ok=True)
    scratch = _source(spec["scratch"])
    overlaid: set[str] = set()
    for src, dst, ro in mounts:
        _make_path(dst, scratch, overlaid)
        _bind(src, dst, ro)
    for src, dst in files:
        _bind(src, dst, False)
    security = spec.get("security") or {}
    confine = _confine_module() if security else None
    if confine is not None and security.get("run_as_user"):
        command = shutil.which(spec["argv"][0], path=spec["env"].get("PATH"))
        if command:
            confine.reach(command, security["run_as_user"], security.get("run_as_group") or 0)
    if confine is not None and security.get("read_only_root"):
        confine.read_only_root([m["dst"] for m in spec.get("mounts", []) if not m.get("ro")])
    if spec.get("cwd"):
        os.chdir(spec["cwd"])
    if confine is not None:
        confine.confine(security)  # last: it may take the rights every step above needs
    argv = spec["argv"]
    os.set_inheritable(START_FD, False)  # closes when exec succeeds: EOF means "started"
    try:
        os.execvpe(argv[0], argv, spec["env"])
    except OSError as e:
        _start_error(spec_path, f"cannot run {argv[0]!r}: {e.strerror}")
        os._exit(127 if isinstance(e, FileNotFoundError) else 126)


def _confine_module() -> ModuleType:
    """:mod:`.confine`, loaded by path (the package is not imported here)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "confine.py")
    spec = importlib.util.spec_from_file_location("ztfl_confine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _start_error(spec_path: str, msg: str) -> None:
    """Leave the reason next to the spec (the supervisor reports it) and on stderr (the log),
    and say "failed" on the start pipe, with the reason, so the supervisor never takes the exit
    for a start (and can write the reason itself once the root here is read-only)."""
    try:
        with open(spec_path + ".error", "w") as f:
            f.write(msg)
    except OSError:  # readOnlyRootFilesystem already applied: the pipe carries it
        pass
    print(f"ztfl-launch: {msg}", file=sys.stderr, flush=True)
    os.write(START_FD, b"E" + msg.encode(errors="replace")[:4000])


if __name__ == "__main__":
    START_FD = int(sys.argv[2])
    try:
        main(sys.argv[1])
    except Exception as e:  # any set-up failure is the container's start error
        _start_error(sys.argv[1], str(e))
        os._exit(128)
