"""Pure pcap analysis: TCP streams from a capture file, and whether each is TLS records only.

Reads classic pcap (micro- or nanosecond, either byte order) with Ethernet, Linux cooked
(SLL/SLL2) or raw IP link types, IPv4 and IPv6. Each TCP direction is reassembled by sequence
number (retransmissions dropped, gaps kept as breaks). A stream "is TLS" when it parses as a
chain of TLS records (content type 20-23, version 0x0301-0x0304, length <= 2^14+256); for a
connection whose SYN was not captured the walk first resynchronises on a record boundary. The
ServerHello's supported_versions extension tells TLS 1.3 apart. No third-party dependency.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

UDP_PROTO, TCP_PROTO = 17, 6
_MAX_RECORD = (1 << 14) + 256
_TLS_TYPES = {20, 21, 22, 23}


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    seq: int
    syn: bool
    payload: bytes


def _ip(data: bytes) -> tuple[str, str, int, bytes] | None:
    if not data:
        return None
    ver = data[0] >> 4
    if ver == 4 and len(data) >= 20:
        ihl = (data[0] & 0x0F) * 4
        total = struct.unpack("!H", data[2:4])[0]
        return (str(ipaddress.IPv4Address(data[12:16])), str(ipaddress.IPv4Address(data[16:20])),
                data[9], data[ihl:total])
    if ver == 6 and len(data) >= 40:
        plen = struct.unpack("!H", data[4:6])[0]
        return (str(ipaddress.IPv6Address(data[8:24])), str(ipaddress.IPv6Address(data[24:40])),
                data[6], data[40:40 + plen])  # extension headers are not followed
    return None


def _l3(linktype: int, frame: bytes) -> bytes | None:
    if linktype == 1:  # Ethernet
        off, etype = 14, struct.unpack("!H", frame[12:14])[0]
        while etype in (0x8100, 0x88A8) and len(frame) >= off + 4:
            etype = struct.unpack("!H", frame[off + 2:off + 4])[0]
            off += 4
        return frame[off:] if etype in (0x0800, 0x86DD) else None
    if linktype == 113:  # Linux cooked v1
        return frame[16:] if struct.unpack("!H", frame[14:16])[0] in (0x0800, 0x86DD) else None
    if linktype == 276:  # Linux cooked v2
        return frame[20:] if struct.unpack("!H", frame[0:2])[0] in (0x0800, 0x86DD) else None
    if linktype in (12, 101, 228, 229):  # raw IP
        return frame
    return None


def read_packets(pcap: bytes) -> Iterator[Packet]:
    """TCP and UDP packets of a classic pcap file, in capture order."""
    if len(pcap) < 24:
        return
    magic = pcap[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError("not a classic pcap file (pcapng is not supported)")
    linktype = struct.unpack(endian + "I", pcap[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(pcap):
        incl = struct.unpack(endian + "I", pcap[off + 8:off + 12])[0]
        frame = pcap[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) < incl:
            break  # truncated tail (capture still being written)
        l3 = _l3(linktype, frame)
        ip = _ip(l3) if l3 is not None else None
        if ip is None:
            continue
        src, dst, proto, l4 = ip
        if proto == TCP_PROTO and len(l4) >= 20:
            sport, dport, seq = struct.unpack("!HHI", l4[:8])
            doff = (l4[12] >> 4) * 4
            yield Packet(src, dst, proto, sport, dport, seq, bool(l4[13] & 0x02), l4[doff:])
        elif proto == UDP_PROTO and len(l4) >= 8:
            sport, dport = struct.unpack("!HH", l4[:4])
            yield Packet(src, dst, proto, sport, dport, 0, False, l4[8:])


@dataclass
class Stream:
    """One direction of one TCP connection, reassembled; ``chunks`` are split at gaps."""

    src: str
    dst: str
    syn_seen: bool = False
    chunks: list[bytes] = field(default_factory=list)
    segments: int = 0

    @property
    def nbytes(self) -> int:
        return sum(len(c) for c in self.chunks)


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def tcp_streams(packets: list[Packet]) -> list[Stream]:
    """Reassemble TCP payloads per direction (by sequence number, retransmissions removed)."""
    segs: dict[tuple[str, str], list[tuple[int, bytes]]] = {}
    syn: dict[tuple[str, str], int] = {}
    for p in packets:
        if p.proto != TCP_PROTO:
            continue
        key = (_endpoint(p.src, p.sport), _endpoint(p.dst, p.dport))
        if p.syn:
            syn[key] = (p.seq + 1) & 0xFFFFFFFF
        if p.payload:
            segs.setdefault(key, []).append((p.seq, p.payload))
    out = []
    for key, items in segs.items():
        base = syn.get(key, items[0][0])
        rel = sorted((((s - base) & 0xFFFFFFFF), d) for s, d in items)
        st = Stream(key[0], key[1], syn_seen=key in syn, segments=len(items))
        cur, nxt = bytearray(), rel[0][0]
        for r, d in rel:
            if r > nxt:  # gap: keep what we have, start a new chunk
                st.chunks.append(bytes(cur))
                cur, nxt = bytearray(), r
            if r + len(d) > nxt:
                cur += d[nxt - r:]
                nxt = r + len(d)
        st.chunks.append(bytes(cur))
        out.append(st)
    return out


def _header_ok(b: bytes, i: int) -> int | None:
    """Length of the TLS record at ``b[i:]`` if its header is plausible, else None."""
    if i + 5 > len(b) or b[i] not in _TLS_TYPES or b[i + 1] != 3 or b[i + 2] > 4:
        return None
    n = struct.unpack("!H", b[i + 3:i + 5])[0]
    return n if 0 < n <= _MAX_RECORD else None


def _chains(b: bytes, i: int, need: int = 3) -> bool:
    for _ in range(need):
        if i >= len(b):
            return True
        n = _header_ok(b, i)
        if n is None:
            return False
        i += 5 + n
    return True


@dataclass(frozen=True)
class TLSView:
    """What a stream looks like as TLS: records walked, bytes outside records, TLS 1.3 seen."""

    records: int
    non_tls_bytes: int
    tls13: bool
    unaligned_bytes: int = 0  # post-gap pieces too short to hold a record boundary: unjudged


def _server_hello_tls13(body: bytes) -> bool:
    """Whether a handshake record body holding a ServerHello selects TLS 1.3."""
    if len(body) < 4 + 38 or body[0] != 2:
        return False
    i = 4 + 2 + 32
    sid = body[i]
    i += 1 + sid + 2 + 1  # session id, cipher suite, compression
    if i + 2 > len(body):
        return False
    end = min(len(body), i + 2 + struct.unpack("!H", body[i:i + 2])[0])
    i += 2
    while i + 4 <= end:
        etype, elen = struct.unpack("!HH", body[i:i + 4])
        if etype == 43 and elen == 2:  # supported_versions
            return body[i + 4:i + 6] == b"\x03\x04"
        i += 4 + elen
    return False


def tls_view(stream: Stream) -> TLSView:
    """Walk ``stream`` as TLS records (resynchronising when the start was not captured)."""
    records, junk, tls13, unaligned = 0, 0, False, 0
    for k, b in enumerate(stream.chunks):
        i = 0
        if not (k == 0 and stream.syn_seen):
            # Bytes before the first record boundary belong to an uncaptured record.
            limit = min(len(b), 5 + _MAX_RECORD)
            i = next((j for j in range(limit) if _chains(b, j)), -1)
            if i < 0:
                # A piece between capture gaps that is no longer than one record may lie
                # wholly inside a record: it proves nothing either way. A longer one must
                # contain a record boundary if it is TLS.
                if len(b) <= 5 + _MAX_RECORD:
                    unaligned += len(b)
                else:
                    junk += len(b)
                continue
        while i < len(b):
            n = _header_ok(b, i)
            if n is None:
                junk += len(b) - i
                break
            if b[i] == 22 and not tls13:
                tls13 = _server_hello_tls13(b[i + 5:i + 5 + n])
            records += 1
            i += 5 + n
    return TLSView(records, junk, tls13, unaligned)


def contains(streams: list[Stream], packets: list[Packet], pattern: bytes) -> bool:
    """Whether ``pattern`` occurs in any reassembled stream or any single payload."""
    return (any(pattern in c for s in streams for c in s.chunks)
            or any(pattern in p.payload for p in packets))
