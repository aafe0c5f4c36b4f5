"""A sidecar pod's traffic redirect as data: the nftables rules, and the pod annotation that
asks the node to install them.

In a ``restricted`` namespace (SEC3) no container of the pod may hold ``NET_ADMIN``, so the
redirect cannot come from the pod's own init container: the pod carries the annotation
``ztfl.io/sidecar-redirect`` (ports and the proxy's uid, never rule text) and something with
the node's rights renders and installs the rules in the pod's network namespace before its
containers start (the local backend's node overlay, or the ztfl node agent on Kubernetes), as
Linkerd's CNI plugin does instead of its ``proxy-init`` container. Since the node renders the
rules itself, a pod can only ask for this one table of NAT redirects in its own namespace.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ANNOTATION = "ztfl.io/sidecar-redirect"
NFT_TABLE = "ztfl_sidecar"


def _ports(ports: tuple[int, ...]) -> str:
    return "{ " + ", ".join(str(p) for p in ports) + " }"


def _port(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
        raise ValueError(f"{what}: {v!r} is not a port number (1-65535)")
    return v


@dataclass(frozen=True)
class Redirect:
    """``inbound``: (app port, proxy port) pairs; ``outbound``: the app's destination ports
    sent to ``outbound_proxy_port``; the proxy's own uid is never redirected."""

    inbound: tuple[tuple[int, int], ...] = ()
    outbound: tuple[int, ...] = ()
    outbound_proxy_port: int = 4140
    proxy_uid: int = 2102

    def rules(self) -> str:
        """An ``nft -f`` script (re)creating table ``inet ztfl_sidecar`` with the redirects."""
        lines = [f"table inet {NFT_TABLE}", f"delete table inet {NFT_TABLE}",
                 f"table inet {NFT_TABLE} {{"]
        if self.inbound:
            lines += ["  chain prerouting {",
                      "    type nat hook prerouting priority dstnat; policy accept;"]
            lines += [f'    iifname != "lo" tcp dport {port} redirect to :{proxy}'
                      for port, proxy in self.inbound]
            lines.append("  }")
        if self.outbound:
            lines += ["  chain output {",
                      "    type nat hook output priority -100; policy accept;",
                      f"    meta skuid {self.proxy_uid} return",
                      '    oifname "lo" return',
                      f"    tcp dport {_ports(self.outbound)} "
                      f"redirect to :{self.outbound_proxy_port}",
                      "  }"]
        lines += ["}", ""]
        return "\n".join(lines)

    def to_annotation(self) -> str:
        return json.dumps({"inbound": [list(p) for p in self.inbound],
                           "outbound": list(self.outbound),
                           "outboundProxyPort": self.outbound_proxy_port,
                           "proxyUid": self.proxy_uid}, separators=(",", ":"))

    @classmethod
    def from_annotation(cls, text: str) -> Redirect:
        """Parse the annotation; ValueError with one line naming what is wrong."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON: {e.msg}") from None
        if not isinstance(doc, dict) or set(doc) - {"inbound", "outbound", "outboundProxyPort",
                                                     "proxyUid"}:
            raise ValueError("expected an object with inbound, outbound, outboundProxyPort, "
                             "proxyUid")
        pairs = doc.get("inbound", [])
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2
                                                  for p in pairs):
            raise ValueError("inbound: expected a list of [app port, proxy port]")
        outbound = doc.get("outbound", [])
        if not isinstance(outbound, list):
            raise ValueError("outbound: expected a list of ports")
        uid = doc.get("proxyUid", 2102)
        if not isinstance(uid, int) or isinstance(uid, bool) or not 1 <= uid < 2**31:
            raise ValueError(f"proxyUid: {uid!r} is not a non-root uid")
        return cls(
            tuple((_port(a, "inbound"), _port(b, "inbound")) for a, b in pairs),
            tuple(_port(p, "outbound") for p in outbound),
            _port(doc.get("outboundProxyPort", 4140), "outboundProxyPort"),
            uid,
        )
