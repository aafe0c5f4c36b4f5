"""A wire capture never outlives the harness that started it, even one killed by SIGKILL."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHILD = """
import sys, time
from pathlib import Path
from k8s_fixtures.tls.capture import WireCapture
cap = WireCapture(sys.argv[1], "lo", marker_to="127.0.0.1", workdir=Path(sys.argv[2])).start()
print(cap.proc.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text(
    ).split()[2]


@pytest.mark.privileged
def test_capture_dies_with_a_sigkilled_harness(tmp_path: Path) -> None:
    ns = f"zttl-life-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    child = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        child = subprocess.Popen([sys.executable, "-c", CHILD, ns, str(tmp_path)],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        tcpdump = int(child.stdout.readline())
        assert _alive(tcpdump)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(tcpdump) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(tcpdump), f"tcpdump {tcpdump} outlived its harness"
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)
