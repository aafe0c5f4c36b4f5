"""Wait until a file changes (Linux inotify), for a follower of a container's log.

Written here on ctypes rather than with ``inotify_simple`` (which the FL server uses): the local
backend runs rootless on the system Python with the standard library and PyYAML only."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select

IN_MODIFY = 0x00000002
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class FileWatch:
    """``wait(seconds)`` returns when the file was written to, or after ``seconds``; where
    the file cannot be watched it only sleeps."""

    def __init__(self, path: str) -> None:
        self._fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd >= 0 and _libc.inotify_add_watch(self._fd, os.fsencode(path), IN_MODIFY) < 0:
            os.close(self._fd)
            self._fd = -1

    def wait(self, seconds: float) -> None:
        if self._fd < 0:
            select.select([], [], [], seconds)
            return
        ready, _, _ = select.select([self._fd], [], [], seconds)
        if ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self._fd, 4096)  # drain: the events themselves say nothing more

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
