"""NFQUEUE over a raw netlink socket: bind queues, read packet ids, send (batch) verdicts.

Why our own and not ``netfilterqueue`` (PyPI, the delay line's first transport): version 1.1.0
sets no queue flags and has no batch verdicts, and the two are what make the delay line cheap
(issue 14 item 5):

- ``NFQA_CFG_F_GSO``: without it the kernel segments every GSO/GRO super-packet into MSS-sized
  packets before queueing it, so userspace handles each segment; with it a super-packet is
  queued, held and accepted as one.
- ``NFQNL_MSG_VERDICT_BATCH``: one message accepts every packet of a queue up to an id. A
  FIFO delay class releases its due packets in id order, so one message per class per release
  replaces one syscall per packet; the verdicts of one pass go out in a single ``send``.

Of each packet only its first ``shaper.HEAD`` bytes are copied (``COPY_PACKET`` with that
range): the IP and TCP headers, from which the delay line's rate (:mod:`.shaper`) counts the
frames a GSO packet will be. Every queue is bound on one socket; ``recv_into`` a fixed buffer
and ``struct`` offsets keep the per-packet Python work to a few operations. The protocol
constants are the kernel's (``include/uapi/linux/netfilter/nfnetlink_queue.h``,
``nfnetlink.h``, ``netlink.h``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterator

from .shaper import HEAD, ip_lengths

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
MSG_PACKET = NFNL_SUBSYS_QUEUE << 8 | 0
MSG_VERDICT = NFNL_SUBSYS_QUEUE << 8 | 1
MSG_CONFIG = NFNL_SUBSYS_QUEUE << 8 | 2
MSG_VERDICT_BATCH = NFNL_SUBSYS_QUEUE << 8 | 3
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
CFG_CMD, CFG_PARAMS, CFG_QUEUE_MAXLEN, CFG_MASK, CFG_FLAGS = 1, 2, 3, 4, 5
CMD_BIND, CMD_UNBIND = 1, 2
COPY_PACKET = 2
F_GSO = 4
ATTR_PACKET_HDR, ATTR_VERDICT_HDR, ATTR_TIMESTAMP, ATTR_PAYLOAD = 1, 2, 4, 10
NF_DROP, NF_ACCEPT = 0, 1
SO_TIMESTAMPNS = 35  # Linux; not in the socket module on every build

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, portid (host order)
_NFGEN = struct.Struct("!BBH")  # family, version, res_id (queue number, network order)
_ATTR = struct.Struct("=HH")  # nla_len, nla_type
# a verdict message: nlmsghdr, nfgenmsg, one NFQA_VERDICT_HDR attribute {be32 verdict, be32 id}
_VHDR = struct.Struct("!II")
_VERDICT_LEN = _NLMSG.size + _NFGEN.size + _ATTR.size + _VHDR.size  # 32 bytes
# a queued packet: nlmsghdr (16), nfgenmsg (4: res_id at 18), then NFQA_PACKET_HDR first
# (attribute header at 20, packet id at 24, be32)
_QUEUE_AT, _ID_AT = 18, 24
_U16 = struct.Struct("!H")
_ID = struct.Struct("!I")
_HEAD = struct.Struct("=IH")  # nlmsg_len, nlmsg_type
_QID = struct.Struct("!H4xI")  # at 18: res_id (queue), NFQA_PACKET_HDR header, packet_id
_TYPE = struct.Struct("=H")
_STAMP = struct.Struct("!QQ")  # struct nfqnl_msg_packet_timestamp: sec, usec


class NfqError(OSError):
    """The kernel refused a queue configuration (bind, flags, length)."""


def _attr(kind: int, payload: bytes) -> bytes:
    n = _ATTR.size + len(payload)
    return _ATTR.pack(n, kind) + payload + b"\0" * (-n % 4)


def verdict_message(queue: int, packet_id: int, verdict: int, *, batch: bool) -> bytes:
    """One verdict (``batch``: for every packet of ``queue`` up to ``packet_id``)."""
    return (_NLMSG.pack(_VERDICT_LEN, MSG_VERDICT_BATCH if batch else MSG_VERDICT,
                        NLM_F_REQUEST, 0, 0)
            + _NFGEN.pack(socket.AF_UNSPEC, 0, queue)
            + _ATTR.pack(_ATTR.size + _VHDR.size, ATTR_VERDICT_HDR)
            + _VHDR.pack(verdict, packet_id))


class NfQueue:
    """One netlink socket serving several NFQUEUE numbers.

    ``bind(queue, max_len)`` each queue, then on readability ``read()`` yields
    ``(queue, packet_id)`` per queued packet; verdicts are collected with :meth:`accept`,
    :meth:`accept_upto` and :meth:`drop` and go out together on :meth:`flush`.
    """

    def __init__(self, rcvbuf: int = 8 << 20, bufsize: int = 1 << 16) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE (root)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.setblocking(False)
        self.buf = bytearray(bufsize)
        self.view = memoryview(self.buf)
        self.pending: list[bytes] = []
        self.early: list[tuple[int, int]] = []  # packets read while waiting for an ack
        self.bound: list[int] = []
        self.seq = 0
        self.overruns = 0  # ENOBUFS: the kernel could not deliver (counted there as user drops)
        self.errors = 0  # error replies to verdicts (should stay 0)
        self.ts_at = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    # -- configuration -------------------------------------------------------------------
    def _config(self, queue: int, *attrs: bytes) -> None:
        self.seq += 1
        body = _NFGEN.pack(socket.AF_UNSPEC, 0, queue) + b"".join(attrs)
        msg = _NLMSG.pack(_NLMSG.size + len(body), MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK,
                          self.seq, 0) + body
        self.sock.send(msg)
        self.sock.setblocking(True)
        self.sock.settimeout(5.0)
        try:
            while True:  # the ack; packets of queues bound already are kept for read()
                n = self.sock.recv_into(self.buf)
                for at, kind, seq in _messages(self.buf, n):
                    if kind == MSG_PACKET:
                        self.early.append((_U16.unpack_from(self.buf, at + _QUEUE_AT)[0],
                                           _ID.unpack_from(self.buf, at + _ID_AT)[0]))
                    elif kind == NLMSG_ERROR and seq == self.seq:
                        err = -struct.unpack_from("=i", self.buf, at + _NLMSG.size)[0]
                        if err:
                            raise NfqError(err, f"NFQUEUE {queue}: {os.strerror(err)}")
                        return
        finally:
            self.sock.settimeout(None)
            self.sock.setblocking(False)

    def bind(self, queue: int, max_len: int, *, gso: bool = True) -> None:
        """Bind ``queue``: each packet's first ``HEAD`` bytes, at most ``max_len`` packets
        waiting, GSO packets whole when ``gso``."""
        self._config(queue, _attr(CFG_CMD, struct.pack("!BxH", CMD_BIND, socket.AF_INET)))
        self.bound.append(queue)
        self._config(queue, _attr(CFG_PARAMS, struct.pack("!IB", HEAD, COPY_PACKET)),
                     _attr(CFG_QUEUE_MAXLEN, struct.pack("!I", max_len)))
        if gso:
            self._config(queue, _attr(CFG_FLAGS, struct.pack("!I", F_GSO)),
                         _attr(CFG_MASK, struct.pack("!I", F_GSO)))

    def close(self) -> None:
        """Unbind every queue (the kernel also does it when the socket closes) and close."""
        for q in self.bound:
            with contextlib.suppress(OSError):
                self._config(q, _attr(CFG_CMD, struct.pack("!BxH", CMD_UNBIND, 0)))
        self.bound.clear()
        self.sock.close()

    # -- packets -------------------------------------------------------------------------
    def read(self, limit: int = 256, lengths: bool = False
             ) -> list[tuple[int, int, float, int, int]]:
        """``(queue, packet_id, stamp, length, header)`` of the packets waiting now, at most
        ``limit`` datagrams. ``stamp`` is the packet's kernel receive time
        (``CLOCK_REALTIME`` seconds, see :func:`enable_rx_stamps`), 0.0 if it carries none;
        with ``lengths``, ``length`` and ``header`` are :func:`.shaper.ip_lengths` of it
        (else 0, 0)."""
        recv_into, buf = self.sock.recv_into, self.buf
        head, qid, typ, stamp = _HEAD.unpack_from, _QID.unpack_from, _TYPE.unpack_from, _STAMP
        out: list[tuple[int, int, float, int, int]] = [(q, i, 0.0, 0, 0) for q, i in self.early]
        self.early = []
        ts_at = self.ts_at  # where NFQA_TIMESTAMP was last found: the layout rarely changes
        for _ in range(limit):
            try:
                n = recv_into(buf)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.overruns += 1
                    continue
                raise
            at = 0
            while at + _NLMSG.size <= n:
                ln, kind = head(buf, at)
                if kind == MSG_PACKET:
                    q, pid = qid(buf, at + _QUEUE_AT)
                    t = 0.0
                    if not (ts_at and ts_at + 20 <= ln
                            and typ(buf, at + ts_at + 2)[0] == ATTR_TIMESTAMP):
                        ts_at = self.ts_at = _find(buf, at, ln, ATTR_TIMESTAMP, 4 + _STAMP.size)
                    if ts_at:
                        sec, usec = stamp.unpack_from(buf, at + ts_at + 4)
                        t = sec + usec * 1e-6
                    # the payload is the last attribute: after the stamp when there is one
                    pl = _find(buf, at, ln, ATTR_PAYLOAD, 4, ts_at) if lengths else 0
                    if pl:
                        n_pl = _ATTR.unpack_from(buf, at + pl)[0] - 4
                        out.append((q, pid, t, *ip_lengths(buf, at + pl + 4, n_pl)))
                    else:
                        out.append((q, pid, t, 0, 0))
                elif kind == NLMSG_ERROR:
                    self.errors += 1
                if ln < _NLMSG.size:
                    break
                at += (ln + 3) & ~3
        return out

    def accept(self, queue: int, packet_id: int) -> None:
        self.pending.append(verdict_message(queue, packet_id, NF_ACCEPT, batch=False))

    def accept_upto(self, queue: int, packet_id: int) -> None:
        """Accept every packet of ``queue`` still waiting with an id up to ``packet_id``."""
        self.pending.append(verdict_message(queue, packet_id, NF_ACCEPT, batch=True))

    def drop(self, queue: int, packet_id: int) -> None:
        self.pending.append(verdict_message(queue, packet_id, NF_DROP, batch=False))

    def flush(self) -> None:
        """Send the collected verdicts, several messages per datagram."""
        p = self.pending
        if not p:
            return
        for i in range(0, len(p), 512):  # 16 KiB per datagram
            data = b"".join(p[i:i + 512])
            while True:
                try:
                    self.sock.send(data)
                    break
                except BlockingIOError:  # a full send buffer: rare and brief
                    continue
        p.clear()


def _find(buf: bytearray, at: int, ln: int, kind: int, size: int, start: int = 0) -> int:
    """The offset of attribute ``kind`` (at least ``size`` bytes with its header) in the
    message at ``at``, relative to it, searching from ``start`` (an attribute's offset;
    0: the first); 0 if none."""
    a, end = start or _NLMSG.size + _NFGEN.size, ln
    while a + 4 <= end:
        alen, atype = _ATTR.unpack_from(buf, at + a)
        if atype & 0x3FFF == kind and alen >= size:
            return a
        if alen < 4:
            return 0
        a += (alen + 3) & ~3
    return 0


def enable_rx_stamps() -> socket.socket:
    """Make the kernel stamp every received packet (so queued packets carry
    ``NFQA_TIMESTAMP``): a socket with ``SO_TIMESTAMPNS`` turns the machine-wide
    ``netstamp_needed`` on for as long as it is open. Keep the socket; close it to undo."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    return s


def _messages(buf: bytearray, n: int) -> Iterator[tuple[int, int, int]]:
    """(offset, type, sequence number) of each netlink message in ``buf[:n]``."""
    at = 0
    while at + _NLMSG.size <= n:
        ln, kind, _flags, seq, _pid = _NLMSG.unpack_from(buf, at)
        yield at, kind, seq
        if ln < _NLMSG.size:
            return
        at += (ln + 3) & ~3
