"""Fault scenarios: an optional matrix axis (``faults: [...]``, ``--ztfl-faults``) that injects
a real fault into a cell on purpose, so the failure taxonomy is tested against real failures.

A scenario may change the run before it is rendered (``prepare``: e.g. a CPU limit, a shorter
join timeout, an extra client id for a hostile peer), change the rendered Kubernetes objects
(``objects``: an expired certificate, a NetworkPolicy set without DNS, a restartPolicy; the
runner calls it through :func:`render`), and/or act while the rounds run (``inject``, called in
a thread once the rounds are released). Every action an injector takes is recorded
(:func:`record`, :func:`actions`) with its wall-clock window, so the classification can tie a
failure to what was really done.

Classification is not here: the taxonomy (:mod:`pytest_ztfl.taxonomy`) labels every failure
from the harness's evidence, blind to which scenario ran. A scenario only says which class its
failures must get (``expect``); :func:`agreement` compares the two for the row, and a matrix
run fails a fault cell whose failures the taxonomy labels otherwise.

Scenarios that reach into the local backend (nft rules in a pod's network namespace, the delay
line's process) say so with ``local_only``; ``requires`` names what the cell must have
(``tls``: SEC2/SEC3 with native mTLS, ``netpol``: SEC1/SEC3, ``net``: a NET profile).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from k8s_fixtures import workload

if TYPE_CHECKING:
    from k8s_fixtures.tls.ca import CertificateAuthority
    from pytest_ztfl.matrix import Cell
    from pytest_ztfl.taxonomy import Label

Obj = dict[str, Any]
TARGET = 1  # the client most scenarios hit
FAULT_LABEL = "ztfl.io/fault"  # set on the pod a scenario targets (objects hook)
JOIN_TIMEOUT = 15.0  # seconds the server waits for a client that never comes (was 300)
HOSTILE_FAIL_PREFIX = "ztfl-hostile:"


@dataclass(frozen=True)
class FaultContext:
    """What an injector may use while the run goes."""

    cluster: Any
    namespace: str
    run: workload.FLRun
    round_started: Callable[[int], threading.Event]  # event set when round N starts
    stop: threading.Event  # set when the run is over: injectors must return promptly


@dataclass(frozen=True)
class Action:
    """One thing an injector did, with its wall-clock window (end == start for an instant)."""

    kind: str  # sigkill, partition, loss, delayline-kill, probe-dns, probe-connect, hostile
    client: int | None
    start: float
    end: float
    detail: dict[str, Any] = field(default_factory=dict)

    def covers(self, wall: float, slack: float = 0.0) -> bool:
        return self.start - slack <= wall <= self.end + slack


ObjectsHook = Callable[[list[Obj], workload.FLRun, "CertificateAuthority | None"], list[Obj]]


@dataclass(frozen=True)
class Fault:
    name: str
    expect: str  # the failure class the harness must report for the affected client(s)
    describe: str
    prepare: Callable[[workload.FLRun], workload.FLRun] = lambda run: run
    inject: Callable[[FaultContext], None] | None = None
    objects: ObjectsHook | None = None  # rewrite the rendered objects (runner: faults.render)
    requires: frozenset[str] = frozenset()  # "tls" (native mTLS), "netpol", "net"
    local_only: bool = False
    continues: bool = True  # the run must go on with the remaining clients
    unready: frozenset[str] = frozenset()  # pods that fail on purpose: not waited for

    def unsupported(self, cell: Cell) -> str | None:
        """Why this scenario cannot run in ``cell`` (None: it can)."""
        if self.name != "malformed-update" and cell.workload.clients <= TARGET:
            return f"fault {self.name} hits fl-client-{TARGET}: needs at least {TARGET + 1} clients"
        if "tls" in self.requires and not (cell.tls and cell.mtls == "native"):
            return f"fault {self.name} needs SEC2/SEC3 with native mTLS"
        if "netpol" in self.requires and not cell.netpol:
            return f"fault {self.name} needs SEC1/SEC3 (NetworkPolicy)"
        if "net" in self.requires and cell.net == "NET0":
            return f"fault {self.name} needs a network profile (NET1..)"
        return None


# ---------------------------------------------------------------------------- action records

_ACTIONS: dict[str, list[Action]] = {}
_ACTIONS_LOCK = threading.Lock()


def record(namespace: str, action: Action) -> None:
    with _ACTIONS_LOCK:
        _ACTIONS.setdefault(namespace, []).append(action)


def actions(namespace: str) -> list[Action]:
    with _ACTIONS_LOCK:
        return list(_ACTIONS.get(namespace, ()))


def forget(namespace: str) -> None:
    """Drop a namespace's records (call once its row is built; a rerun starts clean)."""
    with _ACTIONS_LOCK:
        _ACTIONS.pop(namespace, None)


def _guarded(inject: Callable[[FaultContext], None]) -> Callable[[FaultContext], None]:
    """An injector's error is recorded as an action (and so visible), never lost in a thread."""

    def run(ctx: FaultContext) -> None:
        try:
            inject(ctx)
        except Exception as exc:  # recorded: the row then names the injector as broken
            t = time.time()
            record(ctx.namespace, Action("error", None, t, t, {"error": repr(exc)}))

    return run


# ---------------------------------------------------------------------------- run rewrites


def _set_flag(flags: Sequence[str], flag: str, value: str) -> tuple[str, ...]:
    out = list(flags)
    if flag in out:
        out[out.index(flag) + 1] = value
    else:
        out += [flag, value]
    return tuple(out)


def _flag(flags: Sequence[str], flag: str) -> str | None:
    return flags[flags.index(flag) + 1] if flag in flags else None


def short_join(run: workload.FLRun, seconds: float = JOIN_TIMEOUT) -> workload.FLRun:
    """The server stops waiting for a client that never comes after ``seconds`` (it waits as
    long again for the harness's release file, so proofs get 2 x ``seconds``)."""
    return replace(run, server_flags=_set_flag(run.server_flags, "--join-timeout", f"{seconds:g}"))


def _override(run: workload.FLRun, client: int, **changes: Any) -> workload.FLRun:
    over = dict(run.overrides)
    over[client] = replace(over.get(client, workload.ClientOverride()), **changes)
    return replace(run, overrides=over)


def _pod_obj(objs: list[Obj], name: str) -> Obj:
    for o in objs:
        if o.get("kind") == "Pod" and o["metadata"]["name"] == name:
            return o
    raise ValueError(f"no Pod {name} among the rendered objects")


def _policy(objs: list[Obj], name: str) -> Obj:
    for o in objs:
        if o.get("kind") == "NetworkPolicy" and o["metadata"]["name"] == name:
            return o
    raise ValueError(f"no NetworkPolicy {name} among the rendered objects (is netpol on?)")


def _mark_target(objs: list[Obj], client: int = TARGET) -> None:
    pod = _pod_obj(objs, f"{workload.CLIENT}-{client}")
    pod["metadata"].setdefault("labels", {})[FAULT_LABEL] = "target"


_NOT_TARGET = {"key": FAULT_LABEL, "operator": "DoesNotExist"}


def _exclude_target(selector: dict[str, Any]) -> None:
    selector.setdefault("matchExpressions", []).append(dict(_NOT_TARGET))


def render(fault: Fault | None, run: workload.FLRun, ca: CertificateAuthority | None) -> list[Obj]:
    """The run's objects with the fault's rewrite applied: what the runner must apply."""
    objs = workload.render(run, ca)
    if fault is None or fault.objects is None:
        return objs
    return fault.objects(objs, run, ca)


def ready_names(fault: Fault | None, objs: Sequence[Obj]) -> list[str] | None:
    """The pods the runner must wait for: all (None) unless the fault makes one of them fail
    or never become ready on purpose (an OOMKilled or refused client)."""
    if fault is None or not fault.unready:
        return None
    return [
        o["metadata"]["name"]
        for o in objs
        if o.get("kind") == "Pod" and o["metadata"]["name"] not in fault.unready
    ]


# ---------------------------------------------------------------------------- agreement


def agreement(fault: Fault, labels: Sequence[Label]) -> dict[str, Any]:
    """The blind taxonomy's labels of a fault cell's failures against the class the scenario
    must produce: ``agrees`` True when there are failures and all are of ``expect``, False when
    any is not, None when the fault caused no failure (nothing to judge: e.g. loss bursts that
    TCP rode out)."""
    classes = dict(Counter(lb.cls for lb in labels))
    agrees = None if not labels else set(classes) == {fault.expect}
    return {"expect": fault.expect, "classified": classes, "agrees": agrees}


# ---------------------------------------------------------------------------- workload


def _kill_client(ctx: FaultContext) -> None:
    """SIGKILL client 1's main process while round 2 is in flight."""
    if not ctx.round_started(2).wait(600) or ctx.stop.is_set():
        return
    t = time.time()
    ctx.cluster.signal(
        ctx.namespace, f"{workload.CLIENT}-{TARGET}", workload.CLIENT, signal.SIGKILL
    )
    record(ctx.namespace, Action("sigkill", TARGET, t, time.time()))


def _restart_on_failure(objs: list[Obj], run: workload.FLRun, ca: Any) -> list[Obj]:
    _pod_obj(objs, f"{workload.CLIENT}-{TARGET}")["spec"]["restartPolicy"] = "OnFailure"
    return objs


HOSTILE = r"""
import json, os, sys
import grpc
import numpy as np
from fl_app.proto import fl_pb2, fl_pb2_grpc
from fl_app.tensors import from_proto, to_proto
server, cid, tls_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
opts = [("grpc.max_receive_message_length", 64 << 20)]
if os.path.exists(os.path.join(tls_dir, "tls.crt")):
    rd = lambda n: open(os.path.join(tls_dir, n), "rb").read()
    creds = grpc.ssl_channel_credentials(rd("ca.crt"), rd("tls.key"), rd("tls.crt"))
    ch = grpc.secure_channel(server, creds, options=opts)
else:
    ch = grpc.insecure_channel(server, options=opts)
stub = fl_pb2_grpc.FederatedLearningStub(ch)
out = {"joined": False, "submitted": False}
try:
    for task in stub.Join(fl_pb2.JoinRequest(client_id=cid), timeout=120):
        if task.kind == fl_pb2.Task.SETUP:
            out["joined"] = True
        elif task.kind == fl_pb2.Task.TRAIN:
            arrays = {}
            for t in task.weights.tensors:
                a = np.frombuffer(t.data, dtype=np.dtype(t.dtype)).reshape(tuple(t.shape))
                arrays[t.name] = a.copy()
            name = next(iter(arrays))
            arrays[name] = np.full(arrays[name].size - 1, np.nan, arrays[name].dtype)
            upd = fl_pb2.Update(client_id=cid, round=task.round, weights=to_proto(arrays),
                                num_samples=10, train_seconds=0.1)
            out["round"] = task.round
            try:
                stub.Submit(upd, timeout=30)
                out["status"] = "OK"
            except grpc.RpcError as e:
                out["status"], out["details"] = e.code().name, e.details()
            out["submitted"] = True
            break
        elif task.kind == fl_pb2.Task.FINISH:
            break
except grpc.RpcError as e:
    out["error"] = f"{e.code().name}: {e.details()}"
print(json.dumps(out), flush=True)
"""


def _hostile_prepare(run: workload.FLRun) -> workload.FLRun:
    """One more client id than there are client pods: the hostile peer's."""
    n = int(_flag(run.server_flags, "--clients") or run.clients)
    run = replace(run, server_flags=_set_flag(run.server_flags, "--clients", str(n + 1)))
    return short_join(run)


def _hostile(ctx: FaultContext) -> None:
    """Join as the extra client and answer the first TRAIN task with a malformed update.
    Started as the rounds are released, not later: the peer's Python start-up takes seconds on
    a loaded machine, while a short run's rounds take a fraction of one."""
    if ctx.stop.is_set():
        return
    cid = int(_flag(ctx.run.server_flags, "--clients") or ctx.run.clients) - 1
    t = time.time()
    argv = [
        *ctx.run.python,
        "-c",
        HOSTILE,
        f"{workload.SERVER}:{workload.PORT}",
        str(cid),
        workload.TLS_DIR,
    ]
    try:
        rc, out, err = ctx.cluster.exec(
            ctx.namespace, f"{workload.CLIENT}-0", argv, container=workload.CLIENT, timeout=120
        )
    except Exception as exc:
        rc, out, err = -1, "", str(exc)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    detail: dict[str, Any] = json.loads(lines[-1]) if lines else {"rc": rc, "err": err[-300:]}
    record(ctx.namespace, Action("hostile", cid, t, time.time(), detail))


# ---------------------------------------------------------------------------- resource


def _oom_prepare(run: workload.FLRun) -> workload.FLRun:
    return _override(run, TARGET, memory_limit=OOM_LIMIT)


OOM_LIMIT = "64Mi"  # below any Python + torch process: killed while starting, before joining


CPU_LIMIT = "100m"


def _cpu_prepare(run: workload.FLRun) -> workload.FLRun:
    return _override(run, TARGET, cpu_limit=CPU_LIMIT)


# ---------------------------------------------------------------------------- mTLS


def _tls_objects(expired: bool) -> ObjectsHook:
    def hook(objs: list[Obj], run: workload.FLRun, ca: CertificateAuthority | None) -> list[Obj]:
        from k8s_fixtures.tls.ca import CertificateAuthority
        from k8s_fixtures.tls.secret import to_secret

        if ca is None:
            raise ValueError("this fault needs mTLS (a CA)")
        name = f"{workload.CLIENT}-{TARGET}-fault-mtls"
        if expired:
            now = dt.datetime.now(dt.UTC)
            issued = ca.issue(
                ca.identity(run.namespace, workload.CLIENT),
                not_before=now - dt.timedelta(days=2),
                not_after=now - dt.timedelta(days=1),
            )
        else:
            other = CertificateAuthority.create(name="ztfl fault: another CA")
            issued = replace(
                other.issue(other.identity(run.namespace, workload.CLIENT)), ca_pem=ca.cert_pem
            )  # trusts the right CA, presents a foreign cert
        secret = to_secret(issued, name=name, labels={"ztfl.io/run": run.run_id})
        pod = _pod_obj(objs, f"{workload.CLIENT}-{TARGET}")
        for vol in pod["spec"].get("volumes", []):
            if vol["name"] == "tls":
                vol["secret"]["secretName"] = name
        first_pod = next(i for i, o in enumerate(objs) if o.get("kind") == "Pod")
        return [*objs[:first_pod], secret, *objs[first_pod:]]

    return hook


ROGUE_SA = "fl-rogue"


def _spiffe_prepare(run: workload.FLRun) -> workload.FLRun:
    return short_join(_override(run, TARGET, service_account=ROGUE_SA))


# ---------------------------------------------------------------------------- NetworkPolicy


def _no_dns_objects(objs: list[Obj], run: workload.FLRun, ca: Any) -> list[Obj]:
    """Client 1 is left out of the allow-dns policy: default-deny then drops its lookups."""
    _mark_target(objs)
    _exclude_target(_policy(objs, "ztfl-allow-dns")["spec"]["podSelector"])
    return objs


def _deny_port_objects(objs: list[Obj], run: workload.FLRun, ca: Any) -> list[Obj]:
    """Client 1 is left out of both FL allow rules: its connections to the server's port are
    dropped by default-deny (egress) and by the server's ingress policy."""
    _mark_target(objs)
    _exclude_target(_policy(objs, "ztfl-fl-client-egress")["spec"]["podSelector"])
    for rule in _policy(objs, "ztfl-fl-server-ingress")["spec"]["ingress"]:
        for peer in rule.get("from", []):
            if "podSelector" in peer:
                _exclude_target(peer["podSelector"])
    return objs


# ---------------------------------------------------------------------------- network faults


def _server_ip(ctx: FaultContext) -> str:
    ip: str = next(p.ip for p in ctx.cluster.pods(ctx.namespace) if p.name == workload.SERVER)
    return ip


def _nft(ctx: FaultContext, script: str) -> None:
    """Run an nft script inside client 1's network namespace (through the container)."""
    rc, _, err = ctx.cluster.exec(
        ctx.namespace,
        f"{workload.CLIENT}-{TARGET}",
        ["nft", "-f", "-"],
        container=workload.CLIENT,
        input=script,
    )
    if rc != 0:
        raise RuntimeError(f"nft in {ctx.namespace}/{workload.CLIENT}-{TARGET}: {err.strip()}")


def _nft_dropped(ctx: FaultContext) -> int:
    """The impairment table's ``dropped`` counter so far (0 when there is none)."""
    rc, out, _ = ctx.cluster.exec(
        ctx.namespace,
        f"{workload.CLIENT}-{TARGET}",
        ["nft", "-j", "list", "counters", "table", "inet", "ztfl_fault"],
        container=workload.CLIENT,
    )
    if rc != 0:
        return 0
    return sum(
        int(item["counter"]["packets"])
        for item in json.loads(out).get("nftables", [])
        if item.get("counter", {}).get("name") == "dropped"
    )


def _drop_rules(server_ip: str, percent: int | None) -> str:
    """A table that drops (all, or ``percent`` % at random of) packets to/from the server,
    counting into the table's ``dropped`` counter (read as evidence by the harness, which
    does not know about this table: k8s_fixtures.local.netns_counters)."""
    cond = "" if percent is None else f"numgen random mod 100 < {percent} "
    return (
        "table inet ztfl_fault {\n"
        "  counter dropped {\n  }\n"
        "  chain out { type filter hook output priority -10; policy accept;\n"
        f'    ip daddr {server_ip} {cond}counter name "dropped" drop\n  }}\n'
        "  chain in { type filter hook input priority -10; policy accept;\n"
        f'    ip saddr {server_ip} {cond}counter name "dropped" drop\n  }}\n'
        "}\n"
    )


# Healing removes the chains and keeps the counter: what was dropped stays visible.
HEAL = "delete chain inet ztfl_fault out\ndelete chain inet ztfl_fault in\n"


def _windowed(
    kind: str,
    percent: int | None,
    bursts: int,
    seconds: float,
    gap: float = 0.0,
    every: int = 0,
    span: int = 0,
) -> Callable[[FaultContext], None]:
    """``bursts`` fault windows. Clock-driven (``every == 0``): each lasts ``seconds``, ``gap``
    s apart, from round 2. Round-driven: burst i starts with round ``2 + i * every`` and ends
    when round ``2 + i * every + span`` starts (``seconds`` at most), so every burst lands
    inside the run however fast its rounds go."""

    def inject(ctx: FaultContext) -> None:
        if not ctx.round_started(2).wait(600) or ctx.stop.is_set():
            return
        ip = _server_ip(ctx)
        for i in range(bursts):
            first = 2 + i * every
            if i and not every and ctx.stop.wait(gap):
                return
            if i and every and (not ctx.round_started(first).wait(600) or ctx.stop.is_set()):
                return
            t = time.time()
            st = ctx.cluster.pod_status(ctx.namespace, f"{workload.CLIENT}-{TARGET}")
            if not any(c.name == workload.CLIENT and c.state == "running" for c in st.containers):
                record(ctx.namespace, Action("target-gone", TARGET, t, t, {"burst": i}))
                return
            before = _nft_dropped(ctx)
            _nft(ctx, _drop_rules(ip, percent))
            try:
                # the fault's duration, not a race workaround
                (ctx.round_started(first + span) if every else ctx.stop).wait(seconds)
                dropped = _nft_dropped(ctx) - before
            finally:
                try:
                    _nft(ctx, HEAL)
                except RuntimeError:
                    if not ctx.stop.is_set():  # after the run the pod may be gone with it
                        raise
            record(
                ctx.namespace,
                Action(
                    kind, TARGET, t, time.time(), {"dropped_packets": dropped, "percent": percent}
                ),
            )

    return inject


PARTITION_SECONDS = 8.0


def _kill_delayline(ctx: FaultContext) -> None:
    """SIGKILL the namespace's delay line (a process this harness started) in round 2."""
    if not ctx.round_started(2).wait(600) or ctx.stop.is_set():
        return
    netem = getattr(ctx.cluster, "netem", None)
    handle = netem.handle(ctx.namespace) if netem is not None else None
    pid = handle.status(check_rules=False).pid if handle is not None else None
    t = time.time()
    if pid is None:
        record(ctx.namespace, Action("delayline-kill", None, t, t, {"error": "no delay line"}))
        return
    os.kill(pid, signal.SIGKILL)
    record(ctx.namespace, Action("delayline-kill", None, t, time.time(), {"pid": pid}))


# ---------------------------------------------------------------------------- registry

FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "client-kill",
            "workload",
            "client 1 SIGKILLed during round 2, restarted (restartPolicy OnFailure)",
            inject=_guarded(_kill_client),
            objects=_restart_on_failure,
            # on Kubernetes the client is its container's PID 1, which ignores a SIGKILL sent
            # from inside its own PID namespace (and the image ships no kill(1))
            local_only=True,
        ),
        Fault(
            "malformed-update",
            "workload",
            "a hostile peer joins with an extra client id and submits a malformed update",
            prepare=_hostile_prepare,
            inject=_guarded(_hostile),
        ),
        Fault(
            "client-oom",
            "resource",
            f"client 1 limited to {OOM_LIMIT} memory (OOMKilled)",
            prepare=lambda run: short_join(_oom_prepare(run)),
            unready=frozenset({f"{workload.CLIENT}-{TARGET}"}),
        ),
        Fault(
            "cpu-throttle",
            "resource",
            f"client 1 limited to {CPU_LIMIT} CPU (straggler: round deadline misses)",
            prepare=_cpu_prepare,
        ),
        Fault(
            "mtls-expired",
            "mtls",
            "client 1 presents an expired certificate",
            prepare=short_join,
            objects=_tls_objects(expired=True),
            requires=frozenset({"tls"}),
        ),
        Fault(
            "mtls-other-ca",
            "mtls",
            "client 1 presents a certificate of another CA",
            prepare=short_join,
            objects=_tls_objects(expired=False),
            requires=frozenset({"tls"}),
        ),
        Fault(
            "mtls-identity",
            "mtls",
            f"client 1 runs as ServiceAccount {ROGUE_SA} (SPIFFE id not on the allow-list)",
            prepare=_spiffe_prepare,
            requires=frozenset({"tls"}),
            unready=frozenset({f"{workload.CLIENT}-{TARGET}"}),
        ),
        Fault(
            "netpol-no-dns",
            "netpol",
            "client 1 is not selected by the allow-dns policy (cannot resolve the server)",
            prepare=short_join,
            objects=_no_dns_objects,
            requires=frozenset({"netpol"}),
        ),
        Fault(
            "netpol-deny-port",
            "netpol",
            "client 1 is not allowed to the server's gRPC port",
            prepare=short_join,
            objects=_deny_port_objects,
            requires=frozenset({"netpol"}),
        ),
        Fault(
            "netem-loss",
            "netem",
            "3 bursts of 30 % packet loss between client 1 and the server, from rounds 2, 8 "
            "and 14, each over 2 rounds (2 s at most)",
            inject=_guarded(_windowed("loss", 30, bursts=3, seconds=2.0, every=6, span=2)),
            local_only=True,
        ),
        Fault(
            "netem-partition",
            "netem",
            f"client 1 cut off from the server for {PARTITION_SECONDS:g} s, then healed",
            inject=_guarded(
                _windowed("partition", None, bursts=1, seconds=PARTITION_SECONDS, gap=0)
            ),
            local_only=True,
        ),
        Fault(
            "delayline-kill",
            "netem",
            "the delay line is SIGKILLed during round 2",
            inject=_guarded(_kill_delayline),
            local_only=True,
            requires=frozenset({"net"}),
            continues=False,
        ),
    )
}


def get(name: str | None) -> Fault | None:
    if name is None:
        return None
    if name not in FAULTS:
        raise ValueError(f"fault {name!r}: unknown (known: {', '.join(sorted(FAULTS))})")
    return FAULTS[name]
