"""A wire capture never outlives the harness that started it, even one killed by SIGKILL; its
flush waits for the marker and fails when the marker cannot be captured."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from k8s_fixtures.tls.capture import CaptureError, WireCapture

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


@pytest.fixture
def lo_netns() -> object:
    ns = f"zttl-flush-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.mark.privileged
def test_flush_returns_once_the_marker_is_written_after_megabytes(lo_netns: str,
                                                                  tmp_path: Path) -> None:
    """Several MB captured before the flush: the marker is still found (incremental search)."""
    cap = WireCapture(lo_netns, "lo", marker_to="127.0.0.1", workdir=tmp_path).start()
    try:
        blast = ("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                 "for _ in range(600): s.sendto(b'z'*8000, ('127.0.0.1', 9))")
        subprocess.run(["ip", "netns", "exec", lo_netns, sys.executable, "-c", blast],
                       check=True)
        cap.flush()
        size = cap.path.stat().st_size
    finally:
        cap.stop()
    assert size > 1_000_000  # tcpdump may drop some of a burst; megabytes were written
    assert b"ztfl-capture-marker-" in cap.path.read_bytes()


@pytest.mark.privileged
def test_flush_fails_when_the_marker_cannot_be_captured(lo_netns: str, tmp_path: Path) -> None:
    cap = WireCapture(lo_netns, "lo", marker_to="127.0.0.1", workdir=tmp_path, bpf="tcp",
                      timeout=1.0).start()
    try:
        with pytest.raises(CaptureError, match=r"marker to 127\.0\.0\.1 never captured "
                           r"\(\d+ sent in 1 s; tcpdump running, \d+ bytes written"):
            cap.flush()
    finally:
        cap.stop()
    assert cap.proc is not None and cap.proc.poll() is not None


@pytest.mark.privileged
def test_flush_survives_a_lost_marker(lo_netns: str, tmp_path: Path) -> None:
    """The first marker datagram is dropped before the wire (nft, output hook: its send fails):
    the flush sends another and returns; without the resend it would fail."""
    drop_first = ("table inet lose {\nchain o {\ntype filter hook output priority 0;\n"
                  "udp dport 9 numgen inc mod 1000000 0 counter drop\n}\n}\n")
    subprocess.run(["ip", "netns", "exec", lo_netns, "nft", "-f", "-"], input=drop_first,
                   text=True, check=True)
    cap = WireCapture(lo_netns, "lo", marker_to="127.0.0.1", workdir=tmp_path,
                      timeout=5.0).start()
    try:
        cap.flush()
    finally:
        cap.stop()
    listed = subprocess.run(["ip", "netns", "exec", lo_netns, "nft", "list", "table", "inet",
                             "lose"], capture_output=True, text=True, check=True).stdout
    assert "counter packets 1 " in listed, listed
    assert cap.path.read_bytes().count(b"ztfl-capture-marker-") == 1
