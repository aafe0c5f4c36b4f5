"""The capture judge on synthetic pcaps: reassembly, TLS record walking, resync, the pattern."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from k8s_fixtures.tls.capture import judge
from k8s_fixtures.tls.pcap import read_packets, tcp_streams

PATTERN = b"ZTFL-CANARY"


def _frame(src: str, dst: str, sport: int, dport: int, seq: int, payload: bytes,
           syn: bool = False) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02 if syn else 0x18,
                      65535, 0, 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))))
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    return eth + ip + tcp + b"\x00" * 4  # trailing Ethernet padding must be ignored


def _pcap(frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    for f in frames:
        out += struct.pack("<IIII", 0, 0, len(f), len(f)) + f
    return out


def _record(ctype: int, body: bytes) -> bytes:
    return bytes([ctype, 3, 3]) + struct.pack("!H", len(body)) + body


def _server_hello_13() -> bytes:
    ext = struct.pack("!HHH", 43, 2, 0x0304)
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x13\x01" + b"\x00"
    body += struct.pack("!H", len(ext)) + ext
    return _record(22, b"\x02" + struct.pack("!I", len(body))[1:] + body)


def test_tls_stream_with_retransmission_and_reordering() -> None:
    a, b = "10.0.0.2", "10.0.0.3"
    stream = _server_hello_13() + _record(23, b"\x99" * 3000) + _record(23, b"\x98" * 500)
    segs = [stream[i:i + 1000] for i in range(0, len(stream), 1000)]
    frames = [_frame(b, a, 50051, 40000, 99, b"", syn=True)]
    seq = 100
    offs = []
    for s in segs:
        offs.append(seq)
        seq += len(s)
    order = [0, 2, 1, 1, 3]  # out of order plus one retransmission
    frames += [_frame(b, a, 50051, 40000, offs[i], segs[i]) for i in order if i < len(segs)]
    v = judge(_pcap(frames), PATTERN)
    assert v.all_tls and not v.pattern_seen
    assert v.flows[0].tls_records == 3 and v.flows[0].tls13


def test_plaintext_pattern_split_across_segments_is_seen() -> None:
    data = b"x" * 10 + PATTERN + b"y" * 10
    frames = [_frame("10.0.0.2", "10.0.0.3", 40000, 50051, 1000, data[:15]),
              _frame("10.0.0.2", "10.0.0.3", 40000, 50051, 1015, data[15:])]
    v = judge(_pcap(frames), PATTERN)
    assert v.pattern_seen and not v.all_tls
    flow = v.plaintext_flows[0]  # mid-stream (no SYN) and shorter than a record: unjudged
    assert flow.tls_records == 0 and flow.non_tls_bytes + flow.unaligned_bytes == len(data)


def test_mid_connection_capture_resynchronises() -> None:
    recs = b"".join(_record(23, bytes([i]) * 700) for i in range(5))
    tail = recs[300:]  # capture started inside the first record, no SYN seen
    v = judge(_pcap([_frame("10.0.0.2", "10.0.0.3", 40000, 4143, 5, tail)]), PATTERN)
    assert v.all_tls and v.flows[0].tls_records == 4


def test_capture_drops_inside_a_record_do_not_make_tls_look_plain() -> None:
    """tcpdump drops packets under load: a piece between two gaps that lies wholly inside one
    record proves nothing and must not count as non-TLS; a long run of non-records still does."""
    recs = _server_hello_13() + _record(23, b"\x77" * 12000) + _record(23, b"\x66" * 400)
    hello = len(_server_hello_13())
    pieces = [(0, hello + 1000), (hello + 3000, hello + 4000), (hello + 12005, len(recs))]
    frames = [_frame("10.0.0.3", "10.0.0.2", 50051, 40000, 1000 + a, recs[a:b])
              for a, b in pieces]
    v = judge(_pcap(frames), PATTERN)
    flow = v.flows[0]
    assert v.all_tls and flow.unaligned_bytes == 1000 and flow.non_tls_bytes == 0
    junk = bytes(range(256)) * 80  # 20 KB without a record boundary after a gap: not TLS
    frames[1] = _frame("10.0.0.3", "10.0.0.2", 50051, 40000, 1000 + hello + 3000, junk)
    assert not judge(_pcap(frames), PATTERN).all_tls


def test_http2_preface_is_not_tls() -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x12\x04" + b"\x00" * 20
    frames = [_frame("10.0.0.2", "10.0.0.3", 40000, 50051, 0, b"", syn=True),
              _frame("10.0.0.2", "10.0.0.3", 40000, 50051, 1, preface)]
    v = judge(_pcap(frames), PATTERN)
    assert not v.all_tls and v.flows[0].tls_records == 0


def test_empty_capture_is_not_all_tls() -> None:
    v = judge(_pcap([]), PATTERN)
    assert not v.all_tls and v.tcp_payload_bytes == 0
    assert tcp_streams(list(read_packets(_pcap([])))) == []


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000), cuts=st.lists(st.integers(1, 2999)),
       seed=st.integers(0, 2**32 - 1), isn=st.integers(0, 2**32 - 1))
def test_reassembly_is_order_and_duplicate_proof(data: bytes, cuts: list[int], seed: int,
                                                 isn: int) -> None:
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    segs = [(bounds[i], data[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]
    rng = random.Random(seed)
    order = segs + rng.sample(segs, k=min(2, len(segs)))  # some retransmissions
    rng.shuffle(order)
    frames = [_frame("10.0.0.2", "10.0.0.3", 1, 2, isn, b"", syn=True)]
    frames += [_frame("10.0.0.2", "10.0.0.3", 1, 2, (isn + 1 + off) & 0xFFFFFFFF, d)
               for off, d in order]
    streams = tcp_streams(list(read_packets(_pcap(frames))))
    assert [s.chunks for s in streams] == [[data]]
