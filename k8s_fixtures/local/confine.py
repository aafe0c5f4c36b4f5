"""Apply a container's security context to the current process (the local backend's runtime).

Standard library only: :mod:`.launch` loads it by file path (it runs as ``python -I -S`` and
imports nothing of the package) and calls :func:`read_only_root` and :func:`confine` right
before it execs the container command; :meth:`~.pods.Supervisor.exec` runs
``python -I -S -c <this file> SECURITY ARGV...`` inside the container's namespaces, so an exec'd
process is confined exactly as the container is (as ``kubectl exec`` is on Kubernetes).

What it does, in this order, with the ``security`` section of the container's spec (see
:meth:`k8s_fixtures.seccontext.SecurityContext.to_json`):

* ``runAsNonRoot`` with no non-zero ``runAsUser``: refuse to start (there is no image user);
* capabilities: ``drop`` (``ALL`` = every one) minus ``add`` leave the bounding set, and later
  the effective, permitted, inheritable and ambient sets;
* ``allowPrivilegeEscalation: false``: the no_new_privs bit;
* seccomp ``RuntimeDefault``: a filter refusing (EPERM) the system calls container runtimes'
  default profile refuses (the moby/containerd list of mount, namespace, module, clock,
  keyring, bpf, ... calls; clone with namespace flags; clone3 answers ENOSYS as there, so
  the C library falls back to clone). x86_64 only: elsewhere the container fails to start;
* ``runAsGroup``/``runAsUser``: no supplementary groups, then the group, then the user.

:func:`reach` (a non-root ``runAsUser``) lets that user reach the command it runs through
directories it may not search, showing the pod only that path (see its docstring).

:func:`read_only_root` (``readOnlyRootFilesystem``) makes every mount of the container's private
mount namespace read-only except ``/proc``, ``/dev`` and the volumes mounted writable, as a
container runtime does with the container's root.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import struct
import sys
from typing import Any

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_CAPBSET_DROP, PR_CAP_AMBIENT = 38, 22, 24, 47
PR_CAP_AMBIENT_CLEAR_ALL, SECCOMP_MODE_FILTER = 4, 2
MOUNT_ATTR_RDONLY, AT_FDCWD, SYS_MOUNT_SETATTR = 0x1, -100, 442
AT_SYMLINK_NOFOLLOW, AT_NO_AUTOMOUNT = 0x100, 0x800  # never trigger an automount point
CAPS = (  # by number (linux/capability.h)
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
# x86_64 numbers of the calls the runtimes' default seccomp profile refuses without privileges
# (the NUMA memory-policy calls, which recent profiles allow, are left out: torch may use them)
DENIED_X86_64 = (
    134, 136, 139, 153, 155, 156, 159, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 173,
    174, 175, 176, 177, 178, 179, 180, 212, 227, 246, 248, 249, 250, 272, 298, 300, 303, 304,
    305, 308, 313, 320, 321, 323, 428, 429, 430, 431, 432, 433, 442, 443,
)
SYS_CLONE, SYS_CLONE3, AUDIT_ARCH_X86_64 = 56, 435, 0xC000003E
CLONE_NEW_FLAGS = 0x7E020000  # NEWNS NEWCGROUP NEWUTS NEWIPC NEWUSER NEWPID NEWNET
_libc = ctypes.CDLL(None, use_errno=True)


class ConfineError(OSError):
    """The security context cannot be applied; the container must not start."""


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise ConfineError(err, f"{what}: {os.strerror(err)}")


def _prctl(*args: int) -> int:
    return int(_libc.prctl(*[ctypes.c_ulong(a) for a in args]))


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(CAPS) - 1


def dropped_caps(sec: dict[str, Any]) -> list[int]:
    """The capability numbers the context removes (``drop`` minus ``add``)."""
    keep = {CAPS.index(c) for c in sec.get("caps_add", []) if c in CAPS}
    drop = sec.get("caps_drop", [])
    every = range(_last_cap() + 1)
    gone = set(every) if "ALL" in drop else {CAPS.index(c) for c in drop if c in CAPS}
    return sorted(gone - keep)


def _bpf(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def runtime_default_filter() -> bytes:
    """The classic-BPF program of the RuntimeDefault filter (x86_64)."""
    ld, jeq, jset, jge, ret = 0x20, 0x15, 0x45, 0x35, 0x06
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    kill = 0x80000000
    body = [_bpf(ld, 4), _bpf(jeq, AUDIT_ARCH_X86_64, 1, 0), _bpf(ret, kill), _bpf(ld, 0)]
    # from here: the tail is [.. checks ..][allow][eperm][enosys][clone args]
    checks = 3 + len(DENIED_X86_64)

    def to(target: int, i: int) -> int:  # jump offset from check i to tail slot target
        return checks - i - 1 + target
    prog = [_bpf(jge, 0x40000000, to(1, 0), 0),  # x32 ABI calls
            _bpf(jeq, SYS_CLONE3, to(2, 1), 0),
            _bpf(jeq, SYS_CLONE, to(3, 2), 0)]
    prog += [_bpf(jeq, nr, to(1, 3 + i), 0) for i, nr in enumerate(DENIED_X86_64)]
    prog += [_bpf(ret, allow), _bpf(ret, eperm), _bpf(ret, enosys),
             _bpf(ld, 16), _bpf(jset, CLONE_NEW_FLAGS, 0, 1), _bpf(ret, eperm), _bpf(ret, allow)]
    return b"".join(body + prog)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install_seccomp() -> None:
    if os.uname().machine != "x86_64":
        raise ConfineError(errno.ENOTSUP, f"seccomp RuntimeDefault: no syscall table for "
                                          f"{os.uname().machine} in the local backend")
    code = runtime_default_filter()
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
    rc = _libc.prctl(ctypes.c_ulong(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                     ctypes.byref(prog), ctypes.c_ulong(0), ctypes.c_ulong(0))
    _check(int(rc), "seccomp RuntimeDefault")


def _clear_caps(caps: list[int]) -> None:
    """Remove ``caps`` from the effective, permitted and inheritable sets (capget/capset)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # two (effective, permitted, inheritable) words
    _check(_libc.capget(header, data), "capget")
    for cap in caps:
        word, bit = divmod(cap, 32)
        for j in range(3):
            data[word * 3 + j] &= ~(1 << bit) & 0xFFFFFFFF
    _check(_libc.capset(header, data), "capset")


def confine(sec: dict[str, Any]) -> None:
    """Apply ``sec`` (a container's security context) to this process; raise ConfineError."""
    if not sec:
        return
    uid, gid = sec.get("run_as_user"), sec.get("run_as_group")
    if sec.get("run_as_non_root") and not uid:
        raise ConfineError(errno.EPERM, "runAsNonRoot is set but runAsUser is "
                           f"{'0' if uid == 0 else 'not'} (the local backend has no image user)")
    caps = dropped_caps(sec)
    for cap in caps:
        _check(_prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {CAPS[cap]}")
    if sec.get("no_new_privs"):
        _check(_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if sec.get("seccomp") == "RuntimeDefault":
        install_seccomp()  # still privileged: allowed without no_new_privs too
    if gid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
    if uid is not None:
        os.setresuid(uid, uid, uid)  # from root to another uid: the capability sets empty
    if caps:
        _clear_caps(caps)
        _check(_prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient")


MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384


def _searchable(path: str, uid: int, gid: int) -> bool:
    st = os.stat(path)
    shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
    return bool((st.st_mode >> shift) & 1)


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None) -> None:
    enc = [None if s is None else s.encode() for s in (src, dst, fstype, data)]
    _check(_libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]), f"mount {dst}")


def reach(command: str, uid: int, gid: int) -> list[str]:
    """Let ``uid`` reach ``command`` (a path, and the file its symlinks lead to): each directory
    on the way that it may not search is covered, in this mount namespace only, by a tmpfs
    holding just the next step of the way (bound back, or the same symlink). The local backend
    runs commands from this machine's files: a pod sees the interpreter it runs, as an image
    would ship it, and nothing else of, e.g., a 0700 /root. Returns the directories covered."""
    covered: list[str] = []
    for target in (os.path.abspath(command), os.path.realpath(command)):
        d = "/"
        for name in target.strip("/").split("/"):
            child = os.path.join(d, name)
            if d in covered or not _searchable(d, uid, gid):
                _cover(d, child, fresh=d not in covered)
                covered.append(d)
            d = child
    for d in dict.fromkeys(covered):  # nothing to write there, ever
        _mount(None, d, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None)
    return covered


def _cover(d: str, child: str, *, fresh: bool) -> None:
    """Put ``child`` (only) into a tmpfs over ``d`` (``fresh``: mount that tmpfs first)."""
    if os.path.lexists(child) and not fresh:
        return  # already there (a second way through the same directory)
    link = os.readlink(child) if os.path.islink(child) else None
    is_dir = os.path.isdir(child)
    src = None if link is not None else os.open(child, os.O_PATH | os.O_CLOEXEC)
    if fresh:
        _mount("tmpfs", d, "tmpfs", 0, "mode=0755,size=64k")
    if link is not None:
        os.symlink(link, child)
        return
    assert src is not None
    if is_dir:
        os.mkdir(child)
    else:
        open(child, "x").close()  # the mount point of a file
    _mount(f"/proc/self/fd/{src}", child, None, MS_BIND | MS_REC, None)
    os.close(src)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        fields = [line.split() for line in f]
    # mount points escape blanks as octal (\040)
    return [f[4].encode().decode("unicode_escape") for f in fields if len(f) > 4]


def read_only_root(writable: list[str]) -> None:
    """Every mount of this (private) mount namespace read-only, except ``/proc``, ``/dev`` and
    below, and the mount points in ``writable`` (the writable volumes)."""
    keep = {os.path.realpath(p) for p in writable}
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    for mp in _mount_points():
        if mp in keep or any(mp == d or mp.startswith(d + "/") for d in ("/proc", "/dev")):
            continue
        rc = _libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), mp.encode(),
                           ctypes.c_uint(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT), ctypes.byref(attr),
                           ctypes.c_size_t(ctypes.sizeof(attr)))
        if rc != 0:
            err = ctypes.get_errno()
            # covered by a later mount, unreachable, or a kind of mount (nsfs) that has no flags
            if mp != "/" and err in (errno.ENOENT, errno.EACCES, errno.EINVAL):
                continue
            raise ConfineError(err, f"readOnlyRootFilesystem: {mp}: {os.strerror(err)}")


def main(argv: list[str]) -> None:
    """``confine.py [--cgroup-fds=FD,...] SECURITY_JSON ARGV...``: join the container's cgroups
    (``cgroup.procs`` files the caller opened: the mount namespace entered may not show the
    hierarchy), confine as the container's security context says, then exec (the context is
    passed, not read from the state directory, which the container's mount namespace may not
    show). An exec is thus one of the container's processes, as ``kubectl exec`` is."""
    import json

    try:
        if argv and argv[0].startswith("--cgroup-fds="):
            for fd in filter(None, argv.pop(0).partition("=")[2].split(",")):
                os.write(int(fd), b"0")
                os.close(int(fd))
        security = json.loads(argv[0])
        command = shutil.which(argv[1], path=os.environ.get("PATH"))
        if command and security.get("run_as_user"):  # as the container's own command
            reach(command, security["run_as_user"], security.get("run_as_group") or 0)
        confine(security)
        os.execvpe(argv[1], argv[1:], dict(os.environ))
    except OSError as e:
        print(f"ztfl-exec: {e}", file=sys.stderr, flush=True)
        os._exit(126)


if __name__ == "__main__":
    main(sys.argv[1:])
