"""Read refusals and accepted identities from a stunnel 5.68 sidecar log (``debug = notice``).

stunnel numbers each connection (``LOG<level>[<n>]``); the lines of one connection are grouped
and the most specific reason wins. Measured on the server-side (inbound) proxy::

  no client cert   LOG3[0]: SSL_accept: ...: error:0A0000C7:SSL routines::peer did not return
                   a certificate
  other CA         LOG4[n]: CERT: Pre-verification error: unable to get local issuer certificate
                   LOG4[n]: Rejected by CERT at depth=0: CN=...
                   LOG3[n]: SSL_accept: ...: error:0A000086:SSL routines::certificate verify failed
  expired          ... Pre-verification error: certificate has expired ...
  not yet valid    ... Pre-verification error: certificate is not yet valid ...
  identity         LOG4[n]: CERT: Subject checks failed  (checkHost did not match)
  peer aborted     LOG3[n]: SSL_accept: ...: tlsv1 alert unknown ca  (the client did not trust
                   *our* CA: a rogue client trusting only its own CA fails here first)
  plaintext        LOG3[n]: SSL_accept: ...: wrong version number / http request

Errors after the handshake (``SSL_read``/``SSL_write``: unexpected EOF, reset) are connection
teardown, not refusals, and are ignored unless they carry a TLS alert. Accepted peers are
logged as ``LOG5[n]: Certificate accepted at depth=0: CN=<identity dns>``.
A client proxy in ``transparent = destination`` mode also logs ``LOG3: INTERNAL ERROR:
Uninitialized client session cache`` on every connection: harmless (no session resumption for
a destination not known at configuration time) and ignored here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .reasons import (
    HANDSHAKE_FAILED,
    IDENTITY_REJECTED,
    NO_CLIENT_CERT,
    NOT_TLS,
    PEER_ALERT,
    HandshakeFailure,
    verify_reason,
)

_START = re.compile(r"LOG\d\[ui\]: stunnel \d")
_LINE = re.compile(r"LOG(?P<lvl>\d)\[(?P<conn>\d+)\]: (?P<msg>.*)$")
_PEER = re.compile(r"accepted connection from (?P<peer>\S+)")
_SSL_ERR = re.compile(
    r"SSL_(?P<op>accept|connect|read|write): .*?error:[0-9A-Fa-f]+:[^:]*::(?P<e>.*)$")
_REJECTED = re.compile(r"Rejected by CERT at depth=0: (?P<subj>.*)$")
_ACCEPTED = re.compile(r"Certificate accepted at depth=0: (?P<subj>.*)$")
_PREVERIFY = re.compile(r"CERT: Pre-verification error: (?P<e>.*)$")
_NOT_TLS = ("wrong version number", "http request", "unknown protocol", "packet length too long",
            "record layer failure")
IGNORED = ("Uninitialized client session cache",)


@dataclass
class _Conn:
    peer: str = ""
    lines: list[str] = field(default_factory=list)
    ssl_error: str = ""
    preverify: str = ""
    subject_check_failed: bool = False
    rejected_subject: str = ""
    accepted_subject: str = ""


def _is_refusal(op: str, err: str) -> bool:
    """Handshake errors always are; after the handshake (SSL_read/SSL_write) only a peer's
    alert is (TLS 1.3 clients learn of a rejected certificate there), not an EOF or reset."""
    if op in ("accept", "connect"):
        return True
    e = err.lower()
    return "alert" in e and "close notify" not in e


def _connections(log_text: str) -> dict[tuple[int, int], _Conn]:
    """Connections keyed by (process start, connection number): a log may span restarts."""
    conns: dict[tuple[int, int], _Conn] = {}
    run = 0
    for raw in log_text.splitlines():
        if _START.search(raw):
            run += 1
        m = _LINE.search(raw)
        if not m or any(s in raw for s in IGNORED):
            continue
        c = conns.setdefault((run, int(m.group("conn"))), _Conn())
        msg = m.group("msg")
        c.lines.append(raw.strip())
        if mm := _PEER.search(msg):
            c.peer = mm.group("peer")
        elif mm := _SSL_ERR.search(msg):
            if _is_refusal(mm.group("op"), mm.group("e")):
                c.ssl_error = c.ssl_error or mm.group("e").strip()
        elif mm := _PREVERIFY.search(msg):
            c.preverify = c.preverify or mm.group("e").strip()
        elif "CERT: Subject checks failed" in msg:
            c.subject_check_failed = True
        elif mm := _REJECTED.search(msg):
            c.rejected_subject = mm.group("subj").strip()
        elif mm := _ACCEPTED.search(msg):
            c.accepted_subject = mm.group("subj").strip()
    return conns


def _reason(c: _Conn) -> tuple[str, str] | None:
    err = c.ssl_error.lower()
    if c.subject_check_failed:
        return IDENTITY_REJECTED, "CERT: Subject checks failed"
    if c.preverify:
        return verify_reason(c.preverify), c.preverify
    if "peer did not return a certificate" in err:
        return NO_CLIENT_CERT, c.ssl_error
    if "alert" in err:
        return PEER_ALERT, c.ssl_error
    if any(t in err for t in _NOT_TLS):
        return NOT_TLS, c.ssl_error
    if c.ssl_error or c.rejected_subject:
        return HANDSHAKE_FAILED, c.ssl_error or f"rejected {c.rejected_subject}"
    return None


def stunnel_handshake_failures(log_text: str) -> list[HandshakeFailure]:
    """Every refused connection in a stunnel log, in connection order, with its reason."""
    out = []
    for _, c in sorted(_connections(log_text).items()):
        r = _reason(c)
        if r is not None:
            line = next((ln for ln in reversed(c.lines) if "LOG3" in ln or "LOG4" in ln),
                        c.lines[-1])
            out.append(HandshakeFailure(r[0], r[1], line, peer=c.peer,
                                        subject=c.rejected_subject))
    return out


def stunnel_accepted_subjects(log_text: str) -> list[str]:
    """Subjects of the peer certificates the proxy accepted (depth 0), in connection order."""
    return [c.accepted_subject for _, c in sorted(_connections(log_text).items())
            if c.accepted_subject and _reason(c) is None]
