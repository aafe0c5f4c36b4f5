"""Run one matrix cell on a cluster: objects -> pods -> proofs -> FL rounds -> result row.

The order is what makes a measurement trustworthy: the server holds its first round until
the proofs of enforcement have passed (``--hold-file``, released by ``exec touch``), so no
round is ever measured with a control unproven; a failed proof ends the cell with the reason.
The run's namespace is deleted afterwards, whatever happened.
"""

from __future__ import annotations

import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from fl_app.events import ParsedLog, parse_events
from k8s_fixtures import proofs as pf
from k8s_fixtures import workload
from k8s_fixtures.cluster import ClusterError
from k8s_fixtures.tls.secret import SECRET_TYPE, validate_secret
from k8s_fixtures.tls.sidecar import PROXY_CONTAINER
from pytest_ztfl import faults, rows
from pytest_ztfl.backends import Platform, cell_unsupported
from pytest_ztfl.cellplan import HOLD_FILE, READY_TIMEOUT, CellPlan, namespace_for, plan_cell
from pytest_ztfl.matrix import Cell

Progress = Callable[[str], None]


def _pattern(cell: Cell) -> bytes:
    """48 bytes of the initial global model: round 1 sends them to every client."""
    from fl_app.models import build_model
    from fl_app.tensors import state_to_arrays

    first = next(
        iter(state_to_arrays(build_model(cell.workload.model, cell.seed).state_dict()).values())
    )
    return first.tobytes()[:48]


class _Follower(threading.Thread):
    """Streams the server's log while the run goes: progress lines and round-1 detection."""

    def __init__(self, cluster: Any, ns: str, progress: Progress) -> None:
        super().__init__(daemon=True)
        self.cluster, self.ns, self.progress = cluster, ns, progress
        self.round1_done = threading.Event()
        self._round_events: dict[int, threading.Event] = {}
        self._done = False
        self._lock = threading.Lock()

    def round_started(self, n: int) -> threading.Event:
        """Set once round ``n`` has started (or the run ended without it)."""
        with self._lock:
            ev = self._round_events.setdefault(n, threading.Event())
            if self._done:
                ev.set()
            return ev

    def run(self) -> None:
        import json

        try:
            for line in self.cluster.logs(
                self.ns, workload.SERVER, container=workload.SERVER, follow=True
            ):
                if not line.startswith("{"):
                    continue
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("event") == "round_start":
                    self.round_started(int(e["round"])).set()
                elif e.get("event") == "round_end":
                    self.round1_done.set()
                    self.progress(
                        f"  round {e['round']}: {e['duration']:.3f} s, "
                        f"{len(e['participants'])} participants"
                        f"{'' if e['ok'] else ' FAILED'}"
                    )
                elif e.get("event") == "run_end":
                    break
        except ClusterError:
            pass
        finally:
            self.round1_done.set()
            with self._lock:
                self._done = True
                for ev in self._round_events.values():
                    ev.set()


class ZtflPolicyWarning(UserWarning):
    """A NetworkPolicy of a cell that the policy linter flags (it selects no pod, ...)."""


def run_cell(
    cluster: Any,
    cell: Cell,
    platform: Platform,
    backend_note: str,
    progress: Progress = lambda _: None,
) -> tuple[dict[str, Any], bytes]:
    """Measure one cell; returns its row and the server's raw event log."""
    ns = namespace_for(cell)
    started = time.time()
    # What the cell claims, not what was rendered: a rendering or fault that drops a control
    # must fail its proof before any round is measured (cellplan.CellPlan.proofs).
    cp = plan_cell(cell, platform)
    run, fault = cp.run, cp.fault
    faults.forget(ns)  # injector records of an earlier run of this cell
    proofs: list[pf.Proof] = []
    net_failures: list[str] = []
    error: str | None = None
    log = ParsedLog()
    events = b""
    server_log = ""
    pods: list[dict[str, Any]] = []
    overlays: dict[str, Any] = {
        "netpol": _netpol_meta(cluster, cell.netpol),
        "mtls": {"mode": run.tls if cell.tls else None},
        "net": {"profile": cell.net},
    }
    try:
        refusal = cell_unsupported(getattr(cluster, "backend_name", "local"), cell)
        if refusal is not None:  # normally refused before any cluster exists
            raise ClusterError(refusal)
        proofs = deploy_and_prove(cluster, cp)
        progress(f"{cell.id}: pods ready, proofs done")
        # the local policy overlay's lint: e.g. a podSelector that selects no pod of the cell
        lint = [
            w for w in getattr(getattr(cluster, "netpol", None), "warnings", []) if f" {ns}/" in w
        ]
        if lint:
            overlays["netpol"]["warnings"] = lint
            for w in lint:
                warnings.warn(ZtflPolicyWarning(f"{cell.id}: {w}"), stacklevel=1)
        netem = getattr(cluster, "netem", None)
        handle = netem.handle(ns) if netem is not None else None
        if handle is not None:
            overlays["net"].update(handle.metadata())
            handle.watch(lambda exc: net_failures.append(str(exc)))
        elif run.net_profile is not None and run.netem_init is not None:
            # kind/kube: each client pod's init container ran tc netem before the pod could
            # start (a failed init container keeps the pod from becoming ready)
            overlays["net"].update(
                mechanism="netem",
                why="tc netem by each client pod's init container (ztfl-netem-init)",
            )
        elif run.net_profile is not None:
            raise ClusterError(f"network profile {cell.net} was not applied to {ns}")
        else:
            overlays["net"]["mechanism"] = "none"
        failed = [p for p in proofs if not p.passed]
        if failed:
            error = "proof of enforcement failed: " + "; ".join(
                f"{p.name} (expected {p.expect}): {p.detail}" for p in failed
            )
            backend = getattr(cluster, "backend_name", "local")
            if backend in ("kind", "kube"):
                from k8s_fixtures.kube.errors import cni_not_enforcing

                # a policy that blocks nothing on a real cluster: most likely its CNI
                cni = cni_not_enforcing(proofs, backend)
                if cni is not None:
                    error = f"{error}. {cni}"
        else:
            cluster.delete([o for o in cp.probes if o["kind"] in ("Pod", "NetworkPolicy")])
            before = handle.usage() if handle is not None else {}
            wire = _measure(cluster, cp, progress, overlays["mtls"])
            after = handle.usage() if handle is not None else {}
            if after and not after["alive"]:
                # the watch polls; this is the last look, as the run ends
                net_failures.append(f"netem: {after['reason']}")
            if wire.expect == "not-run":
                # Not a proof that passed: say so where the row describes the mTLS overlay.
                overlays["mtls"]["wire_proof"] = wire.detail
            else:
                proofs.append(wire)
            if not wire.passed:
                error = (
                    f"proof of enforcement failed: {wire.name} (expected {wire.expect}): "
                    f"{wire.detail}"
                )
            text = "\n".join(cluster.logs(ns, workload.SERVER, container=workload.SERVER))
            server_log = text
            log = parse_events(text.splitlines(), f"{ns}/fl-server")
            events = "".join(
                line + "\n" for line in text.splitlines() if line.startswith("{")
            ).encode()
            if after:
                from k8s_fixtures.netem.account import between

                overlays["net"]["emulation"] = between(before, after, len(log.of("round_end")))
        pods = _pod_states(cluster, ns)
        if cell.tls and run.tls == "sidecar":
            subjects = _accepted(cluster, ns)
            overlays["mtls"]["accepted_subjects"] = subjects
            overlays["mtls"]["accepted_identities"] = _identities(run, subjects)
    except ClusterError as exc:
        error = f"cluster: {exc}"
    finally:
        try:
            cluster.delete(namespace=ns)
        except ClusterError as exc:
            error = error or f"cluster: could not delete namespace {ns}: {exc}"
    evidence = {
        int(p["name"].rsplit("-", 1)[1]): "resource"
        for p in pods
        if p["name"].startswith("fl-client-") and p.get("reason") == "OOMKilled"
    }
    harness_failures: dict[str, int] = {}
    # The fault's attribution: evidence per client, and clients it kept from ever joining
    # (the server has no event of them: one failure each, of the class that kept them out).
    att = faults.observe(fault, run, log, pods, server_log)
    if fault is not None:
        done = faults.actions(ns)
        overlays["fault"] = {"name": fault.name, "actions": [asdict(a) for a in done]}
        # an injector's own failure (a probe's "error" is its finding, not a failure)
        broken = [
            a.detail
            for a in done
            if a.kind == "error" or (a.kind == "delayline-kill" and "error" in a.detail)
        ]
        if broken and error is None:
            # a fault that was not injected as planned: the cell measured something else
            error = f"fault {fault.name}: not injected as planned: {broken[0]}"
    evidence.update(att.evidence)
    for cls in att.absent.values():
        harness_failures[cls] = harness_failures.get(cls, 0) + 1
    if net_failures:
        # The emulation stopped during the run: nothing measured after that is at this NET.
        msg = net_failures[0]
        error = msg if msg.startswith("netem:") else f"netem: {msg}"
        evidence = dict.fromkeys(range(cell.workload.clients), "netem")
        harness_failures["netem"] = 1
    row = rows.build(
        cell,
        log,
        started_wall=started,
        proofs=[p.to_dict() for p in proofs],
        overlays=overlays,
        pods=pods,
        backend={"name": getattr(cluster, "backend_name", "local"), "note": backend_note},
        evidence=evidence,
        harness_failures=harness_failures,
        error=error,
    )
    return row, events


def deploy_and_prove(cluster: Any, cp: CellPlan) -> list[pf.Proof]:
    """Apply the cell's objects (as its fault rewrites them) and probe pods, wait until ready
    (except pods the fault makes fail on purpose), run the proofs of what the cell claims."""
    objs = cp.objects()
    # The harness's own certificates are checked before anything is applied (expired, not yet
    # valid, key not matching, not from the CA): a bad one is the harness's error, not a proof
    # result. The probes' and a fault's certificates are bad on purpose.
    on_purpose = {id(o) for o in cp.probes}
    for o in objs:
        if (
            o.get("kind") == "Secret"
            and o.get("type") == SECRET_TYPE
            and id(o) not in on_purpose
            and "-fault-" not in o["metadata"]["name"]
        ):
            try:
                validate_secret(o)
            except ValueError as exc:
                raise ClusterError(f"harness certificate: {exc}") from None
    cluster.apply(objs)
    names = faults.ready_names(cp.fault, objs)
    cluster.wait_ready(cp.run.namespace, names=names, timeout=READY_TIMEOUT)
    return pf.run_proofs(cluster, cp.proofs)


def _measure(
    cluster: Any,
    cp: CellPlan,
    progress: Progress,
    mtls_overlay: dict[str, Any] | None = None,
) -> pf.Proof:
    """Release the server, capture round 1 on the pod network, inject the cell's fault if it
    has one, wait for the run to end. In mesh mode, where no capture is possible, the server
    proxy's counters after round 1 stand in (``mesh-mtls``; admitted identities recorded in
    ``mtls_overlay``)."""
    cell, run, fault = cp.cell, cp.run, cp.fault
    ns = run.namespace
    from k8s_fixtures.tls.capture import CaptureError, WireCapture

    timeout = READY_TIMEOUT + cell.workload.rounds * (cell.workload.round_deadline + 30)
    follower = _Follower(cluster, ns, progress)
    server_ip = next(p.ip for p in cluster.pods(ns) if p.name == workload.SERVER)
    node_ns, bridge = getattr(cluster, "node_netns", None), getattr(cluster, "bridge", None)
    expect = "tls-only" if cell.tls else "plaintext"
    wire: pf.Proof | None = None
    with tempfile.TemporaryDirectory(prefix="ztfl-capture-") as tmp:
        cap = None
        if node_ns and bridge:
            try:
                cap = WireCapture(
                    node_ns,
                    bridge,
                    marker_to=server_ip,
                    workdir=Path(tmp),
                    # this cell's server only: cells in parallel share the node's bridge
                    bpf=f"host {server_ip} and (tcp port {workload.PORT} or udp)",
                ).start()
            except CaptureError as exc:
                wire = pf.Proof("wire", "mtls", expect, False, f"capture: {exc}")
        pattern = _pattern(cell) if cap is not None else b""
        follower.start()
        cluster.exec(ns, workload.SERVER, ["touch", HOLD_FILE], container=workload.SERVER)
        progress(f"{cell.id}: proofs passed, rounds released")
        stop = threading.Event()
        injector = None
        if fault is not None and fault.inject is not None:
            ctx = faults.FaultContext(cluster, ns, run, follower.round_started, stop)
            injector = threading.Thread(target=fault.inject, args=(ctx,), daemon=True)
            injector.start()
            progress(f"{cell.id}: fault {fault.name}: {fault.describe}")
        if cap is not None:
            # Stop capturing after round 1 but judge only after the run: parsing the capture
            # while rounds go on would steal CPU from the workload being measured.
            follower.round1_done.wait(timeout)
            try:
                cap.flush()
            except CaptureError as exc:
                wire = pf.Proof("wire", "mtls", expect, False, f"capture: {exc}")
            finally:
                cap.stop()
        elif run.tls == "mesh":
            # Read the server proxy while the server still runs (one short exec during
            # round 2): after the run its app container, the only one with a shell, is gone.
            follower.round1_done.wait(timeout)
            from k8s_fixtures.proofs_mesh import mesh_round

            wire, admitted = mesh_round(cluster, replace(cp.proofs, tls="mesh"))
            if mtls_overlay is not None:
                mtls_overlay["accepted_identities"] = admitted
                mtls_overlay["wire_proof"] = "not run: no pod network capture on this backend"
        try:
            _wait_container_done(cluster, ns, workload.SERVER, workload.SERVER, timeout)
        finally:
            stop.set()
            if injector is not None:
                injector.join(timeout=30)
                if injector.is_alive():
                    t = time.time()
                    faults.record(
                        ns, faults.Action("error", None, t, t, {"error": "injector still running"})
                    )
        follower.join(timeout=10)
        if cap is not None and wire is None:
            try:
                wire = pf.judge_wire(cap.verdict(pattern), bool(cell.tls), min_bytes=1000)
            except CaptureError as exc:
                wire = pf.Proof("wire", "mtls", expect, False, f"capture: {exc}")
        if wire is None:
            wire = pf.Proof(
                "wire",
                "mtls",
                "not-run",
                True,
                "not run: this backend gives no access to the pod network",
            )
    return wire


def _wait_container_done(cluster: Any, ns: str, pod: str, container: str, timeout: float) -> None:
    """Wait until one container of a pod has terminated (a sidecar keeps the pod Running)."""
    deadline = time.monotonic() + timeout
    while True:
        st = cluster.pod_status(ns, pod)
        if st.phase in ("Succeeded", "Failed") or any(
            c.name == container and c.state == "terminated" for c in st.containers
        ):
            return
        if time.monotonic() > deadline:
            raise ClusterError(
                f"pod {ns}/{pod}: container {container} still running after {timeout:.0f} s"
            )
        time.sleep(0.2)


def _netpol_meta(cluster: Any, enabled: bool) -> dict[str, Any]:
    meta = dict(getattr(cluster, "netpol_metadata", {}) or {})
    return {"enabled": enabled, **meta}


def _pod_states(cluster: Any, ns: str) -> list[dict[str, Any]]:
    out = []
    for p in cluster.pods(ns):
        out.append(
            {
                "name": p.name,
                "phase": p.phase,
                "restarts": p.restart_count,
                "reason": p.reason,
                "exit_code": p.exit_code,
            }
        )
    return out


def _identities(run: workload.FLRun, subjects: list[str]) -> list[str]:
    """Map the proxy's accepted certificate subjects back to SPIFFE ids. stunnel logs only the
    subject, whose CN is the identity's DNS form cut to 64 characters (X.520), so compare cut
    forms; an unknown subject is kept as is, flagged."""
    from k8s_fixtures.tls.sidecar import identity_dns_from_spiffe

    known = {}
    for sa in (workload.SERVER, workload.CLIENT):
        sid = run.spiffe_id(sa)
        known[f"CN={identity_dns_from_spiffe(sid)[:64]}"] = sid
    return sorted(known.get(s, f"unknown subject {s}") for s in subjects)


def _accepted(cluster: Any, ns: str) -> list[str]:
    from k8s_fixtures.tls.stunnel_log import stunnel_accepted_subjects

    text = "\n".join(cluster.logs(ns, workload.SERVER, container=PROXY_CONTAINER))
    return sorted(set(stunnel_accepted_subjects(text)))
