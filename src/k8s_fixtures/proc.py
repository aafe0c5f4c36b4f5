"""Helper processes that must not outlive the harness that started them.

``die_with_parent`` runs in the child between fork and exec (``preexec_fn``): the kernel sends
it SIGKILL when the thread that started it dies, even when the harness itself was SIGKILLed and
had no chance to clean up. ``ip netns exec`` execs its command in place, so the setting reaches
the real program (tcpdump, the delay line, probe servers). Start such processes from a thread
that lives as long as they should (the harness's main thread).
"""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
