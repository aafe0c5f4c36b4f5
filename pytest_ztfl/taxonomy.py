"""The failure taxonomy: every failure of a run labelled, per round and client, from evidence.

Blind: :func:`classify` sees what the harness observed of the run (:class:`RunEvidence`) and
never which fault, if any, was injected, so a fault from outside the harness (a process killed
by someone else, a link that drops packets) is labelled the same way. Evidence, and the class
it points to:

* ``workload``: the server refused a client's message (fl_app ``invalid_update``, or a
  ``protocol`` violation that is not mere lateness), the client reported an error of its own
  (``client_error``), or its process died (a pod restart, a non-zero exit);
* ``mtls``: the server refused the client's identity (fl_app ``mtls``), or a client never
  joined while the server refused TLS handshakes;
* ``resource``: the pod was OOM-killed, or its CPU limit throttled it;
* ``netpol``: its NetworkPolicy's deny rules refused its packets;
* ``netem``: the network emulation stopped, or packets of its link were dropped (an impairment
  counter, or TCP retransmission timeouts in its network namespace);
* ``unclassified``: none of the above, with the evidence that was looked at.

Counters are those outside the proofs (the proofs cause refusals and denials on purpose).
The rules are tried in the order of :func:`_label`: the most specific evidence first (a message
the server refused, an identity, an OOM kill, a policy's denial) before the general (a dead
process, lost packets, throttling).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fl_app.events import ParsedLog
from k8s_fixtures.cluster import NetnsCounters

CLASSES = ("netpol", "mtls", "resource", "netem", "workload", "unclassified")
THROTTLE_MIN_S = 0.1  # CPU-limit throttling below this is no evidence of a straggler
NEVER_JOINED = "never_joined"
# fl_app "protocol" reasons that follow from lateness (a straggler's update after its round
# closed), not from a wrong message: judged by the client's evidence, as a timeout is
LATE = frozenset({"late_update", "stale_round", "not_joined"})


@dataclass(frozen=True)
class ClientEvidence:
    """What the harness saw of one client pod (None: this backend cannot see it)."""

    pod: Mapping[str, Any] | None = None  # name, phase, restarts, reason, exit_code
    net: NetnsCounters | None = None  # its network namespace, outside the proofs
    throttled_s: float | None = None  # CPU-limit throttling, outside the proofs


@dataclass(frozen=True)
class RunEvidence:
    clients: int  # client pods of the run
    log: ParsedLog  # the server's events
    per_client: Mapping[int, ClientEvidence]
    refusals: Mapping[str, int] | None = None  # server's TLS handshake refusals by reason
    emulation_failed: str | None = None  # the NET emulation stopped: why


@dataclass(frozen=True)
class Label:
    """One failure: the round (None: before any), the client, what the server logged (its
    fl_app class and reason, or ``never_joined``), the class, and the evidence in words."""

    round: int | None
    client: int | None
    event: str
    cls: str
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"round": self.round, "client": self.client, "event": self.event,
                "class": self.cls, "why": self.why}


def _looked_at(ev: ClientEvidence, refusals: Mapping[str, int] | None) -> str:
    parts = []
    if ev.pod is not None:
        parts.append(f"pod {ev.pod.get('phase')} restarts={ev.pod.get('restarts', 0)} "
                     f"reason={ev.pod.get('reason')} exit={ev.pod.get('exit_code')}")
    if ev.net is not None:
        n = ev.net
        parts.append(f"denied out/in {n.denied_egress}/{n.denied_ingress}, "
                     f"dropped {n.dropped_other}, retrans {n.tcp_retrans}, "
                     f"rto {n.tcp_timeouts}")
    if ev.throttled_s is not None:
        parts.append(f"throttled {ev.throttled_s:.2f} s")
    if refusals is not None:
        parts.append(f"handshake refusals {sum(refusals.values())}")
    return "; ".join(parts) or "no evidence readable on this backend"


def _died(pod: Mapping[str, Any] | None) -> str | None:
    if pod is None:
        return None
    restarts = int(pod.get("restarts") or 0)
    code = pod.get("exit_code")
    if restarts:
        return f"its process died and was restarted {restarts} time(s)"
    if code not in (None, 0):
        return f"its process exited with {code} ({pod.get('reason')})"
    return None


def _label(ev: RunEvidence, client: int | None, fl_class: str, reason: str) -> tuple[str, str]:
    """(class, why) of one failure of ``client`` (fl_class ``never_joined``: it never came)."""
    if fl_class == "invalid_update" or (fl_class == "protocol" and reason not in LATE):
        return "workload", f"the server refused its message ({fl_class}: {reason})"
    if fl_class == "mtls":
        return "mtls", f"the server refused its identity ({reason})"
    if ev.emulation_failed:
        return "netem", f"the network emulation stopped: {ev.emulation_failed}"
    ce = ev.per_client.get(client, ClientEvidence()) if client is not None else ClientEvidence()
    pod, net = ce.pod, ce.net
    if pod is not None and pod.get("reason") == "OOMKilled":
        return "resource", "its pod was OOM-killed"
    if net is not None and net.denied_egress:
        return "netpol", f"its NetworkPolicy refused {net.denied_egress} outgoing packets"
    refused = sum((ev.refusals or {}).values())
    if fl_class == NEVER_JOINED and refused:
        reasons = ", ".join(f"{k} x{v}" for k, v in sorted((ev.refusals or {}).items()) if v)
        return "mtls", f"it never joined while the server refused {refused} handshakes ({reasons})"
    died = _died(pod)
    if died is not None:
        return "workload", died
    if net is not None and (net.dropped_other or net.tcp_timeouts):
        return "netem", (f"its link dropped {net.dropped_other} packets, "
                         f"{net.tcp_timeouts} TCP retransmission timeouts")
    if ce.throttled_s is not None and ce.throttled_s >= THROTTLE_MIN_S:
        return "resource", f"its CPU limit throttled it for {ce.throttled_s:.1f} s"
    if fl_class == "client_error":
        return "workload", f"the client reported an error ({reason})"
    return "unclassified", f"{fl_class} ({reason}); looked at: {_looked_at(ce, ev.refusals)}"


def classify(ev: RunEvidence) -> list[Label]:
    """The emulation's own failure (one, for the cell), every failure event of the server's
    log, then every client that never joined and has no failure event (the server cannot know
    why: it never heard of it). A run whose server logged nothing has nothing to label."""
    out = []
    if ev.emulation_failed:
        out.append(Label(None, None, "emulation_stopped", "netem", ev.emulation_failed))
    if not ev.log.events:
        return out
    for e in ev.log.of("failure"):
        c = e["client"]
        cls, why = _label(ev, c, str(e["class"]), str(e.get("reason") or ""))
        out.append(Label(e.get("round"), c, str(e["class"]), cls, why))
    joined = {int(e["client"]) for e in ev.log.of("client_joined")}
    failed = {int(e["client"]) for e in ev.log.of("failure") if e["client"] is not None}
    for c in range(ev.clients):
        if c not in joined and c not in failed:
            cls, why = _label(ev, c, NEVER_JOINED, "")
            out.append(Label(None, c, NEVER_JOINED, cls, why))
    return out


def counts(labels: list[Label]) -> dict[str, int]:
    return dict(Counter(lb.cls for lb in labels))
