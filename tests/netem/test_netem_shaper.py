"""The delay line's rate (k8s_fixtures.netem.shaper): header parsing, frames of a GSO packet,
serialisation and the byte limit. Pure logic; the live rate is calibrated
(test_netem_calibration.py) and checked per data plane in test_netem_transport.py."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k8s_fixtures.netem.classes import class_spec
from k8s_fixtures.netem.delayline import DelayLine
from k8s_fixtures.netem.nfq import NfQueue
from k8s_fixtures.netem.profiles import get_profile, queue_limit_bytes
from k8s_fixtures.netem.shaper import ETH_HEADER, Shaper, frame_bytes, ip_lengths
from k8s_fixtures.netem.tc import tbf_burst_bytes


def ipv4_tcp(total: int, ihl_words: int = 5, doff_words: int = 8) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl_words, 0, total, 1, 0, 64, 6, 0,
                     b"\x0a\0\0\1", b"\x0a\0\0\2") + b"\x01" * (4 * ihl_words - 20)
    tcp = struct.pack("!HHIIBBHHH", 1, 2, 0, 0, doff_words << 4, 0x10, 1000, 0, 0)
    return (ip + tcp + b"\0" * (4 * doff_words - 20) + b"x" * 200)[:128]


def test_ip_lengths_reads_ipv4_tcp_with_options() -> None:
    # TCP with timestamps: 20 + 32 header bytes, the GSO packet's IP length as stated
    assert ip_lengths(ipv4_tcp(64_000)) == (64_000, 52)
    assert ip_lengths(ipv4_tcp(1500, ihl_words=6, doff_words=5)) == (1500, 44)


def test_ip_lengths_reads_ipv6_and_udp_and_refuses_other_bytes() -> None:
    v6 = struct.pack("!IHBB16s16s", 6 << 28, 1460, 6, 64, b"\0" * 16, b"\0" * 16)
    v6 += struct.pack("!HHIIBBHHH", 1, 2, 0, 0, 8 << 4, 0x10, 1000, 0, 0) + b"\0" * 60
    assert ip_lengths(v6) == (1500, 72)
    udp = bytearray(ipv4_tcp(300))
    udp[9] = 17
    assert ip_lengths(bytes(udp)) == (300, 28)
    assert ip_lengths(b"\x00" * 40) == (0, 0)  # version 0: not IP
    assert ip_lengths(b"\x45" * 10) == (0, 0)  # too short
    # at an offset inside a larger buffer (the netlink message)
    buf = b"z" * 17 + ipv4_tcp(9000) + b"z" * 5
    assert ip_lengths(buf, 17, 128) == (9000, 52)


def test_frame_bytes_of_a_packet_that_fits_one_frame() -> None:
    assert frame_bytes(1500, 52, 1500) == 1514
    assert frame_bytes(52, 52, 1500) == 66
    assert frame_bytes(0, 0, 1500) == ETH_HEADER  # unparsed: charged a bare frame


@given(payload=st.integers(1, 65_000), header=st.integers(40, 120), mtu=st.integers(576, 9000))
def test_frame_bytes_of_a_gso_packet_is_its_segments_frames(payload: int, header: int,
                                                           mtu: int) -> None:
    """A GSO packet is charged exactly what its MSS-sized segments will be on the wire."""
    mss = mtu - header
    segments = [mss] * (payload // mss) + ([payload % mss] if payload % mss else [])
    wire = sum(header + s + ETH_HEADER for s in segments)
    assert frame_bytes(header + payload, header, mtu) == wire


def test_shaper_serialises_back_to_back_packets_at_its_rate() -> None:
    s = Shaper(rate=1e6, limit=100_000)  # 1 MB/s: 1000 bytes take 1 ms
    t = [s.admit(0.0, 1000) for _ in range(5)]
    assert t == pytest.approx([0.001, 0.002, 0.003, 0.004, 0.005])
    # a packet after the link went idle starts at its own arrival
    assert s.admit(1.0, 500) == pytest.approx(1.0005)


def test_shaper_drops_at_its_byte_limit_but_never_into_an_empty_queue() -> None:
    s = Shaper(rate=1e6, limit=3000)
    assert s.admit(0.0, 60_000) == pytest.approx(0.06)  # larger than the limit, link idle
    s = Shaper(rate=1e6, limit=3000)
    kept = [s.admit(0.0, 1000) for _ in range(5)]
    # the first starts at once; then 1000 and 2000 bytes wait ahead of the next two; the
    # fourth would find 3000 ahead of it plus its own 1000: over the limit, as tbf's
    assert [k is not None for k in kept] == [True, True, True, False, False]
    assert s.busy_until == pytest.approx(0.003)
    assert s.admit(0.0025, 1000) == pytest.approx(0.004)  # 500 bytes ahead now: kept


def test_class_spec_carries_the_rate_and_tbfs_buffer() -> None:
    """The delay line's buffer for a rated direction is what the tbf of the same profile had
    (its queue plus its bucket), so TCP meets the same bottleneck."""
    p = get_profile("NET2")
    up = class_spec(p, "up", mtu=1500)
    assert up.rate_mbit == 20 and up.mtu == 1500
    assert up.limit_bytes == (queue_limit_bytes(p, "up") or 0) + tbf_burst_bytes(20)
    assert class_spec(get_profile("NET0"), "down").rate_mbit is None
    assert class_spec(get_profile("NET0"), "down").limit_bytes == 0
    assert math.isclose(class_spec(p, "down").rate_mbit or 0, 50)


class _Verdicts:
    """Records the verdicts DelayLine.on_packet gives (pure logic: no netlink socket)."""

    def __init__(self) -> None:
        self.given: list[tuple[str, int, int]] = []

    def accept(self, queue: int, pid: int) -> None:
        self.given.append(("accept", queue, pid))

    def drop(self, queue: int, pid: int) -> None:
        self.given.append(("drop", queue, pid))


def test_the_python_loop_counts_an_unparsed_rated_packet_and_charges_a_bare_frame(
        tmp_path: Path) -> None:
    """A rated packet whose IP length cannot be read is counted in ``unparsed`` and takes the
    link for one bare frame; a parsed one is not counted; an unrated class counts nothing."""
    rated = {"delay_ms": 0, "rate_mbit": 8, "limit_bytes": 100_000}
    cfg = {"status_path": str(tmp_path / "status.json"), "classes": [
        {"queue": 1, "label": "rated", "max_len": 64, "spec": rated},
        {"queue": 2, "label": "free", "max_len": 64, "spec": {"delay_ms": 0}}]}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    line = DelayLine(tmp_path / "cfg.json")
    nfq = cast(NfQueue, _Verdicts())
    c, free = line.classes[1], line.classes[2]
    line.on_packet(nfq, c, 1, 10.0, 10.0, *ip_lengths(b"\x00" * 40))  # version 0: not IP
    assert c.unparsed == 1
    assert c.fifo[-1][0] == pytest.approx(10.0 + ETH_HEADER / 1e6)  # 8 Mbit/s = 1e6 B/s
    line.on_packet(nfq, c, 2, 10.0, 10.0, *ip_lengths(ipv4_tcp(1500)))
    assert c.unparsed == 1 and c.seen == 2
    assert c.fifo[-1][0] == pytest.approx(10.0 + (ETH_HEADER + 1514) / 1e6)
    line.on_packet(nfq, free, 3, 10.0, 10.0)
    assert free.unparsed == 0 and free.passed == 1
    assert cast(_Verdicts, nfq).given == [("accept", 2, 3)]
