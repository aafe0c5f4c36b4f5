"""Real-kernel probing: the e2e model on network namespaces, its agents, and truth tables.

:class:`NetnsModel` realises a :class:`~k8s_fixtures.netpol.e2emodel.ModelSpec` (the
upstream e2e model) or any :class:`~k8s_fixtures.netpol.e2emodel.ClusterPlan` with
:class:`k8s_fixtures.local.topology.Node` (one namespace per pod on a bridge), starts one
:mod:`~k8s_fixtures.netpol.agent` per pod, applies policies with the nftables
:class:`~k8s_fixtures.netpol.nft.Enforcer`, and probes every ordered pod pair with real
connections. :meth:`NetnsModel.check` compares the observed table with the evaluator's.

A pair expected allowed but observed denied is probed again with a longer timeout (a loaded
machine can be slow to answer, never too permissive); a pair observed allowed that should be
denied is never retried. Everything started is stopped by PID and every namespace created is
deleted in :meth:`NetnsModel.close`, also after failures (use it as a context manager).
"""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import k8s_fixtures
from k8s_fixtures.local.topology import Node, netns_exec, remove_prefixed, run
from k8s_fixtures.netpol.e2emodel import ClusterPlan, ModelSpec
from k8s_fixtures.netpol.model import ClusterView, NetworkPolicy, Protocol
from k8s_fixtures.netpol.nft import DEFAULT_DENY_ACTION, DenyAction, Enforcer, SyncReport
from k8s_fixtures.netpol.truthtable import Mismatch, TruthTable, compare, expected_table

SRC_ROOT = Path(k8s_fixtures.__file__).resolve().parent.parent


class ProbeError(RuntimeError):
    """An agent failed to start or answer; the message names the pod."""


def unique_prefix(base: str = "ztnp") -> str:
    """``base`` plus a random suffix, so concurrent runs never share namespaces."""
    return f"{base}{secrets.token_hex(3)}"


class Agent:
    """One agent process inside a pod namespace, spoken to over stdin/stdout JSON lines."""

    def __init__(self, pod: str, netns: str, serve: str) -> None:
        self.pod = pod
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [str(SRC_ROOT), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            netns_exec(netns, sys.executable, "-m", "k8s_fixtures.netpol.agent",
                       "--name", pod, "--serve", serve),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=env)
        self._next_id = 0

    def _stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace").strip()[-500:]

    def read_line(self, deadline: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProbeError(f"agent {self.pod}: no answer before the deadline")
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    raise ProbeError(f"agent {self.pod} exited "
                                     f"(rc={self.proc.poll()}): {self._stderr()}")
                return dict(json.loads(line))

    def send(self, probes: list[dict[str, Any]]) -> int:
        assert self.proc.stdin is not None
        self._next_id += 1
        self.proc.stdin.write(json.dumps({"id": self._next_id, "probes": probes}).encode()
                              + b"\n")
        self.proc.stdin.flush()
        return self._next_id

    def receive(self, req_id: int, deadline: float) -> list[dict[str, Any]]:
        msg = self.read_line(deadline)
        if msg.get("id") != req_id:
            raise ProbeError(f"agent {self.pod}: answer {msg.get('id')} to request {req_id}")
        return list(msg["results"])

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=5)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._err.close()


@dataclass
class ProbeResult:
    protocol: Protocol
    port: int
    expected: TruthTable
    observed: TruthTable
    mismatches: list[Mismatch]
    details: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    deny_action: DenyAction = DEFAULT_DENY_ACTION

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def report(self, title: str = "") -> str:
        verdict = "PASS" if self.ok else f"FAIL ({len(self.mismatches)} mismatches)"
        parts = [f"{title} {self.protocol}/{self.port} deny={self.deny_action.value}: {verdict}",
                 self.expected.render("expected"), self.observed.render("observed")]
        parts += [f"  {m}  [{self.details.get((m.src, m.dst), {}).get('error')}]"
                  for m in self.mismatches]
        return "\n".join(parts)


class NetnsModel:
    """The e2e model on real network namespaces; a context manager that cleans up after itself."""

    def __init__(self, spec: ModelSpec | ClusterPlan | None = None, prefix: str | None = None,
                 deny_action: DenyAction = DEFAULT_DENY_ACTION) -> None:
        spec = spec or ModelSpec()
        self.plan = spec.plan() if isinstance(spec, ModelSpec) else spec
        self.prefix = prefix or unique_prefix()
        self.node = Node(self.prefix)
        self.enforcer = Enforcer(deny_action)
        self.agents: dict[str, Agent] = {}
        self.policies: tuple[NetworkPolicy, ...] = ()
        self._created = False

    def __enter__(self) -> NetnsModel:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, ready_timeout: float = 20.0) -> None:
        self.node.create()
        self._created = True
        for key in self.plan.pod_keys:
            link = self.node.add_pod(key.replace("/", "-"))
            # Under reject, UDP denials are ICMP errors: lift the per-namespace ICMP rate limit.
            run(netns_exec(link.netns, "sysctl", "-qw", "net.ipv4.icmp_ratemask=0"))
        for planned in self.plan.pods:
            self.agents[planned.key] = Agent(planned.key, self.netns_of(planned.key),
                                             planned.serve_arg())
        deadline = time.monotonic() + ready_timeout
        for agent in self.agents.values():
            if not agent.read_line(deadline).get("ready"):
                raise ProbeError(f"agent {agent.pod}: unexpected first line")

    def netns_of(self, key: str) -> str:
        return self.node.pods[key.replace("/", "-")].netns

    def ip_of(self, key: str) -> str:
        return self.node.pods[key.replace("/", "-")].ip

    def view(self, policies: Sequence[NetworkPolicy] | None = None) -> ClusterView:
        pols = self.policies if policies is None else tuple(policies)
        return self.plan.view(self.ip_of, self.netns_of, pols, (self.node.gateway,))

    @property
    def deny_action(self) -> DenyAction:
        return self.enforcer.deny_action

    def set_deny_action(self, action: DenyAction) -> None:
        """Switch reject/drop; the next :meth:`apply` re-applies every table."""
        if action is not self.enforcer.deny_action:
            self.enforcer.deny_action = action

    def apply(self, policies: Sequence[NetworkPolicy]) -> SyncReport:
        self.policies = tuple(policies)
        return self.enforcer.sync(self.view())

    def probe_pairs(self, pairs: Sequence[tuple[str, str]], protocol: Protocol, port: int,
                    timeout: float) -> dict[tuple[str, str], dict[str, Any]]:
        """Probe the given (src, dst) pairs, all sources in parallel."""
        by_src: dict[str, list[str]] = {}
        for s, d in pairs:
            by_src.setdefault(s, []).append(d)
        pending = {}
        for s, dsts in by_src.items():
            probes = [{"ip": self.ip_of(d), "port": port, "protocol": protocol,
                       "timeout": timeout} for d in dsts]
            pending[s] = self.agents[s].send(probes)
        deadline = time.monotonic() + timeout * 2 + 10
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for s, req in pending.items():
            for d, res in zip(by_src[s], self.agents[s].receive(req, deadline), strict=True):
                if res["ok"] and res["reply"] != d:
                    res = {**res, "ok": False, "error": f"answered by {res['reply']!r}"}
                out[(s, d)] = res
        return out

    def probe(self, protocol: Protocol = "TCP", port: int = 80, timeout: float = 1.0
              ) -> tuple[TruthTable, dict[tuple[str, str], dict[str, Any]]]:
        keys = self.plan.pod_keys
        details = self.probe_pairs([(s, d) for s in keys for d in keys], protocol, port, timeout)
        return TruthTable(keys, {k: bool(v["ok"]) for k, v in details.items()}), details

    def check(self, protocol: Protocol = "TCP", port: int = 80, timeout: float = 1.0,
              retries: int = 2) -> ProbeResult:
        """Probe every pair and compare with the evaluator on the applied policies."""
        keys = self.plan.pod_keys
        expected = expected_table(self.view(), keys, protocol, port)
        observed, details = self.probe(protocol, port, timeout)
        for attempt in range(retries):
            flaky = [(m.src, m.dst) for m in compare(expected, observed)
                     if m.expected and not m.observed]
            if not flaky:
                break
            again = self.probe_pairs(flaky, protocol, port, timeout * (2 + 2 * attempt))
            for pair, res in again.items():
                details[pair] = res
                observed.cells[pair] = bool(res["ok"])
        return ProbeResult(protocol, port, expected, observed, compare(expected, observed),
                           details, self.enforcer.deny_action)

    def close(self) -> None:
        """Stop every agent (by PID), then delete every namespace this model created."""
        for agent in self.agents.values():
            agent.close()
        self.agents.clear()
        if self._created:
            self.node.destroy()
            remove_prefixed(self.prefix)  # only this run's unique prefix
            self._created = False
