"""Read the server proxy's authorization decisions from Linkerd proxy metrics (``:4191/metrics``).

The mesh-mode analogue of :mod:`.grpc_log` / :mod:`.stunnel_log`: the app behind a Linkerd proxy
sees plaintext from loopback only, so who was let in (or refused) is read from the proxy's
Prometheus text. Names and labels as linkerd2-proxy writes them
(``linkerd/app/inbound/src/metrics/authz.rs``, ``linkerd/app/core/src/transport/labels.rs``):

* ``inbound_http_authz_allow_total`` / ``inbound_http_authz_deny_total``: per HTTP request (gRPC
  included), ``inbound_tcp_authz_allow_total`` / ``inbound_tcp_authz_deny_total``: per TCP
  connection (non-HTTP traffic);
* labels: the original destination (``target_addr``, ``target_ip``, ``target_port``), the
  ``Server`` (``srv_group``, ``srv_kind``, ``srv_name``, newer proxies ``srv_port``), for HTTP the
  route (``route_*``), for allows the authorization (``authz_kind``, ``authz_name``), and the
  client's TLS: ``tls="true",client_id="<identity>"`` for a meshed client,
  ``tls="no_identity",no_tls_reason="no_tls_from_remote"`` for a plaintext one (also
  ``tls="disabled"``, ``tls="opaque",sni=...``).

Only the label *names* are relied on, never their order or the set of other labels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

AUTHZ_METRICS = {
    "inbound_http_authz_allow_total": ("allow", "http"),
    "inbound_http_authz_deny_total": ("deny", "http"),
    "inbound_tcp_authz_allow_total": ("allow", "tcp"),
    "inbound_tcp_authz_deny_total": ("deny", "tcp"),
}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def _labels(raw: str) -> dict[str, str] | None:
    """``a="x",b="y"`` -> {a: x, b: y}; None when malformed."""
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(raw):
        m = _LABEL.match(raw, pos)
        if m is None:
            return None
        labels[m.group(1)] = re.sub(r'\\[\\"n]', lambda e: _UNESCAPE[e.group(0)], m.group(2))
        pos = m.end()
    return labels


def parse_prometheus(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (comments and malformed lines skipped)."""
    out: list[Sample] = []
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m is None or line.lstrip().startswith("#"):
            continue
        name, raw, value = m.groups()
        labels = _labels(raw or "")
        if labels is None:
            continue
        try:
            out.append(Sample(name, labels, float(value)))
        except ValueError:
            continue
    return out


def peer_of(labels: dict[str, str]) -> str:
    """Who the proxy says the client was: its mesh identity, or ``<tls: reason>`` without one."""
    tls = labels.get("tls", "")
    if tls == "true" and labels.get("client_id"):
        return labels["client_id"]
    why = labels.get("no_tls_reason") or labels.get("sni") or ""
    return f"<{tls or 'unknown'}{': ' + why if why else ''}>"


@dataclass(frozen=True)
class Decision:
    """One authorization counter of the server proxy, for one port and one peer."""

    verdict: str  # "allow" | "deny"
    layer: str  # "http" (per request) | "tcp" (per connection)
    peer: str  # a mesh identity, or "<no_identity: no_tls_from_remote>" and the like
    meshed: bool  # tls="true" with a client identity
    server: str  # "<srv_kind>/<srv_name>"
    authz: str  # "<authz_kind>/<authz_name>" for allows, "" for denials
    count: float


def _port(labels: dict[str, str]) -> str:
    return labels.get("target_port") or labels.get("srv_port") or ""


def authz_decisions(text: str, port: int) -> list[Decision]:
    """The server proxy's allow/deny counters for inbound traffic to ``port``."""
    out = []
    for s in parse_prometheus(text):
        kind = AUTHZ_METRICS.get(s.name)
        if kind is None or _port(s.labels) != str(port):
            continue
        lb = s.labels
        authz = f"{lb['authz_kind']}/{lb.get('authz_name', '')}" if "authz_kind" in lb else ""
        out.append(Decision(
            verdict=kind[0],
            layer=kind[1],
            peer=peer_of(lb),
            meshed=lb.get("tls") == "true" and bool(lb.get("client_id")),
            server=f"{lb.get('srv_kind', '')}/{lb.get('srv_name', '')}",
            authz=authz,
            count=s.value,
        ))
    return out


Counts = dict[tuple[str, str], float]  # (verdict, peer) -> count


def tally(decisions: Iterable[Decision]) -> Counts:
    """Counts by (verdict, peer), summed over layers, routes and servers."""
    c: Counts = {}
    for d in decisions:
        c[(d.verdict, d.peer)] = c.get((d.verdict, d.peer), 0.0) + d.count
    return c


def new_decisions(before: str, after: str, port: int) -> Counts:
    """What the proxy decided on ``port`` between two scrapes (counters only grow; a counter
    missing from ``before`` counts from zero; a proxy restart shows as nothing new)."""
    old = tally(authz_decisions(before, port))
    diff = {k: v - old.get(k, 0.0) for k, v in tally(authz_decisions(after, port)).items()}
    return {k: v for k, v in diff.items() if v > 0}


def describe(counts: Counts, verdict: str) -> str:
    """``2 x <id>, 1 x <no_identity: ...>`` for one verdict, or ``none``."""
    items = sorted((p, n) for (v, p), n in counts.items() if v == verdict)
    return ", ".join(f"{n:g} x {p}" for p, n in items) or "none"
