"""One cell's run on a cluster, in phases a schedule can interleave with other cells' phases.

``deploy`` (objects applied) -> ``prove`` (pods ready, proofs of enforcement) -> ``start``
(wire capture, the proofs' release of the server's hold) -> rounds -> ``finish`` (the run's
end, logs, the wire verdict) -> ``row`` -> ``cleanup`` (the namespace deleted, whatever
happened). The server holds its first round until the proofs have passed, so no round is ever
measured with a control unproven. With ``hold_rounds`` it also holds every round until the
schedule releases it (``release``): a block's arms then take their rounds in turn
(pytest_ztfl.runner.run_block), and the arm samples its pods' cgroups around each of its rounds.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fl_app.events import ParsedLog, parse_events
from k8s_fixtures import proofs as pf
from k8s_fixtures import workload
from k8s_fixtures.cluster import Cluster, ClusterError, ContainerUsage, CreatesFiles, MeasuresUsage
from k8s_fixtures.netem.account import between
from k8s_fixtures.proc import cpu_seconds, machine_cpu_seconds
from k8s_fixtures.tls.capture import CaptureError, WireCapture
from k8s_fixtures.tls.secret import SECRET_TYPE, validate_secret
from pytest_ztfl import evidence, faults, observe, patterns, rows, taxonomy, usage
from pytest_ztfl.backends import Backend, cell_unsupported
from pytest_ztfl.cellplan import HOLD_FILE, READY_TIMEOUT, CellPlan, plan_cell
from pytest_ztfl.follower import Follower
from pytest_ztfl.live import MILESTONE, Progress, silent
from pytest_ztfl.matrix import Cell
from pytest_ztfl.usage import Sample
from pytest_ztfl.warning_types import ZtflPolicyWarning

if TYPE_CHECKING:
    from k8s_fixtures.netem.overlay import NetemHandle


def deploy(cluster: Cluster, cp: CellPlan) -> list[str] | None:
    """Apply the cell's objects (as its fault rewrites them) and probe pods; return the pods
    to wait for (None: all). The harness's own certificates are checked first (expired, not
    yet valid, key not matching, not from the CA): a bad one is the harness's error, not a
    proof result. The probes' and a fault's certificates are bad on purpose."""
    objs = cp.objects()
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
    return faults.ready_names(cp.fault, objs)


def prove(
    cluster: Cluster,
    cp: CellPlan,
    names: list[str] | None,
    ready: Callable[[], None] | None = None,
) -> list[pf.Proof]:
    """Wait until the pods ``names`` (None: all; a fault may make one fail on purpose) are
    ready, call ``ready`` (e.g. to read counters before the proofs), then run the proofs of
    what the cell claims."""
    cluster.wait_ready(cp.run.namespace, names=names, timeout=READY_TIMEOUT)
    if ready is not None:
        ready()
    return pf.run_proofs(cluster, cp.proofs)


def deploy_and_prove(cluster: Cluster, cp: CellPlan) -> list[pf.Proof]:
    """:func:`deploy` then :func:`prove` (``ztfl probe``)."""
    return prove(cluster, cp, deploy(cluster, cp))


class Arm:
    """One cell on ``cluster``: its phases, its observations, and the row they make."""

    def __init__(
        self,
        backend: Backend,
        cell: Cell,
        progress: Progress = silent,
        *,
        hold_rounds: bool = False,
        context: rows.Context | None = None,
    ) -> None:
        self.backend = backend
        self.cluster, self.cell, self.progress = backend.cluster, cell, progress
        self.hold_rounds = hold_rounds
        self.context = context  # the session's part of the row (project, calibration ...)
        # What the cell claims, not what was rendered: a rendering or fault that drops a
        # control must fail its proof before any round is measured (cellplan.CellPlan.proofs).
        self.cp = plan_cell(cell, backend.platform, hold_rounds=hold_rounds)
        self.ns = self.cp.run.namespace
        self.started = time.time()
        self.actions = faults.ActionLog()  # what this run's fault injector did
        self.proofs: list[pf.Proof] = []
        self.net_failures: list[str] = []
        self.error: str | None = None
        self.log = ParsedLog()
        self.events = b""
        self.server_log = ""
        self.pods: list[dict[str, Any]] = []
        self.overlays: dict[str, Any] = {
            "netpol": {"enabled": cell.netpol, **backend.netpol_metadata()},
            "mtls": {"mode": self.cp.run.tls if cell.tls else None},
            "net": {"profile": cell.net},
            # SEC3: RBAC (no token) and Pod Security restricted (k8s_fixtures.hardening)
            "hardening": {"pod_security": "restricted" if cell.restricted else None},
        }
        self.handle: NetemHandle | None = None
        self._net_before: dict[str, Any] = {}
        self.follower: Follower | None = None
        self._cap: WireCapture | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.wire: pf.Proof | None = None
        self._stop = threading.Event()
        self._injector: threading.Thread | None = None
        self._pattern = b""
        self.round_extra: dict[int, dict[str, Any]] = {}  # per round: order, CPU by part
        self._usage_start: dict[str, dict[str, ContainerUsage]] | None = None
        self._delayline_start: float | None = None
        self.resources: dict[str, Any] = {}
        self.design: dict[str, Any] = {}
        self._ready: list[str] | None = None
        # the taxonomy's evidence: pods ready, rounds released, run over (pytest_ztfl.evidence)
        self._evidence: dict[str, evidence.Snapshot] = {}

    # ---- set-up ------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return self.error is None

    def deploy(self) -> None:
        refusal = cell_unsupported(self.backend.name, self.cell)
        if refusal is not None:  # normally refused before any cluster exists
            raise ClusterError(refusal)
        self._ready = deploy(self.cluster, self.cp)

    def prove(self) -> None:
        """Pods ready, proofs run; a failed proof sets ``error`` (nothing will be measured)."""
        cluster, cell, ns = self.cluster, self.cell, self.ns

        def ready() -> None:
            self._evidence["ready"] = evidence.snapshot(cluster, ns)

        self.proofs = prove(cluster, self.cp, self._ready, ready)
        self.progress(f"{cell.id}: pods ready, proofs done", MILESTONE)
        # the local policy overlay's lint: e.g. a podSelector that selects no pod of the cell
        lint = [
            w
            for w in (self.backend.netpol.warnings if self.backend.netpol is not None else [])
            if f" {ns}/" in w
        ]
        if lint:
            self.overlays["netpol"]["warnings"] = lint
            for w in lint:
                warnings.warn(ZtflPolicyWarning(f"{cell.id}: {w}"), stacklevel=1)
        netem = self.backend.netem
        self.handle = netem.handle(ns) if netem is not None else None
        run = self.cp.run
        # a profile on every client, or (heterogeneity) on some clients only
        shaped = run.net_profile or next((o.net_profile for o in run.overrides.values()
                                          if o.net_profile), None)
        if self.handle is not None:
            self.overlays["net"].update(self.handle.metadata())
            self.handle.watch(lambda exc: self.net_failures.append(str(exc)))
        elif shaped is not None and run.restricted and run.node_agent_wait is not None:
            # kind/kube, SEC3: the node agent ran tc netem in each client pod's namespace; the
            # pod's first init container waited for its mark
            self.overlays["net"].update(
                mechanism="netem",
                why="tc netem by the ztfl node agent (a restricted pod may not hold NET_ADMIN)",
            )
        elif shaped is not None and run.netem_init is not None:
            # kind/kube: each client pod's init container ran tc netem before the pod could
            # start (a failed init container keeps the pod from becoming ready)
            self.overlays["net"].update(
                mechanism="netem",
                why="tc netem by each client pod's init container (ztfl-netem-init)",
            )
        elif shaped is not None:
            raise ClusterError(f"network profile {shaped} was not applied to {ns}")
        else:
            self.overlays["net"]["mechanism"] = "none"
        failed = [p for p in self.proofs if not p.passed]
        if failed:
            error = "proof of enforcement failed: " + "; ".join(
                f"{p.name} (expected {p.expect}): {p.detail}" for p in failed
            )
            backend = self.backend.name
            if backend in ("kind", "kube"):
                from k8s_fixtures.kube.errors import cni_not_enforcing

                # a policy that blocks nothing on a real cluster: most likely its CNI
                cni = cni_not_enforcing(self.proofs, backend)
                if cni is not None:
                    error = f"{error}. {cni}"
            self.error = error
        else:
            cluster.delete([o for o in self.cp.probes if o["kind"] in ("Pod", "NetworkPolicy")])

    # ---- the run -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the wire capture and the log follower, release the proofs' hold, start the
        fault's injector. Without ``hold_rounds`` the rounds run from here on."""
        cluster, cell, ns = self.cluster, self.cell, self.ns
        self._net_before = self.handle.usage() if self.handle is not None else {}
        self.follower = Follower(cluster, ns, self.progress)
        server_ip = next(p.ip for p in cluster.pods(ns) if p.name == workload.SERVER)
        if server_ip is None:
            raise ClusterError(f"{ns}/{workload.SERVER} has no IP")
        capture = self.backend.capture
        expect = "tls-only" if cell.tls else "plaintext"
        if capture is not None:
            # the cluster's name in it: a killed harness's is removed with its cluster's state
            self._tmp = tempfile.TemporaryDirectory(prefix=f"ztfl-capture-{cluster.name}-")
            try:
                self._cap = WireCapture(
                    capture.netns,
                    capture.iface,
                    marker_to=server_ip,
                    workdir=Path(self._tmp.name),
                    # this cell's server only: other cells share the node's bridge
                    bpf=f"host {server_ip} and (tcp port {workload.PORT} or udp)",
                ).start()
            except CaptureError as exc:
                self.wire = pf.Proof("wire", "mtls", expect, False, f"capture: {exc}")
        self._pattern = patterns.pattern(cell) if self._cap is not None else b""
        self.follower.start()
        self._sample_start()
        self._evidence["released"] = evidence.snapshot(cluster, ns)
        self._touch(HOLD_FILE)
        self.progress(f"{cell.id}: proofs passed, rounds released", MILESTONE)
        fault = self.cp.fault
        if fault is not None and fault.inject is not None:
            ctx = faults.FaultContext(
                cluster,
                self.backend.netem,
                ns,
                self.cp.run,
                self.follower.round_started,
                self._stop,
                self.actions,
            )
            self._injector = threading.Thread(target=fault.inject, args=(ctx,), daemon=True)
            self._injector.start()
            self.progress(f"{cell.id}: fault {fault.name}: {fault.describe}", MILESTONE)

    def release(self, r: int) -> None:
        """Let round ``r`` start (``hold_rounds``)."""
        self._touch(f"{HOLD_FILE}.{r}")

    def _touch(self, path: str) -> None:  # from outside where it can: an exec costs ~50 ms
        """Create ``path`` in the server container (a release)."""
        c = self.cluster
        if not (isinstance(c, CreatesFiles) and c.touch(self.ns, workload.SERVER,
                                                         workload.SERVER, path)):
            c.exec(self.ns, workload.SERVER, ["touch", path], container=workload.SERVER)

    def round1_done(self, timeout: float) -> None:
        """After round 1: stop the capture (judged after the run: parsing it while rounds go on
        would steal CPU from the workload being measured), or, in mesh mode, read the server
        proxy's counters while the server still runs."""
        assert self.follower is not None
        expect = "tls-only" if self.cell.tls else "plaintext"
        if self._cap is not None:
            self.follower.round1_done.wait(timeout)
            try:
                self._cap.flush()
            except CaptureError as exc:
                self.wire = pf.Proof("wire", "mtls", expect, False, f"capture: {exc}")
            finally:
                self._cap.stop()
        elif self.cp.run.tls == "mesh" and self.wire is None:
            self.follower.round1_done.wait(timeout)
            self.wire, admitted = pf.mesh_round(self.cluster, replace(self.cp.proofs, tls="mesh"))
            self.overlays["mtls"]["accepted_identities"] = admitted
            self.overlays["mtls"]["wire_proof"] = "not run: no pod network capture on this backend"

    @property
    def run_timeout(self) -> float:
        wl = self.cell.workload
        return READY_TIMEOUT + wl.rounds * (wl.round_deadline + 30)

    def wait_exited(self, timeout: float) -> None:
        """Wait until the server's and every client's workload container has ended."""
        names = [(workload.SERVER, workload.SERVER)] + [
            (f"{workload.CLIENT}-{i}", workload.CLIENT) for i in range(self.cp.run.clients)
        ]
        for pod, container in names:
            # a client that never ran (a fault) or is slow: finish() judges the run
            with contextlib.suppress(ClusterError):
                observe.wait_container_done(self.cluster, self.ns, pod, container, timeout)

    def finish(self) -> None:
        """Wait for the run's end, stop the injector, judge the capture, read the logs."""
        cluster, cell, ns = self.cluster, self.cell, self.ns
        expect = "tls-only" if cell.tls else "plaintext"
        try:
            observe.wait_container_done(
                cluster, ns, workload.SERVER, workload.SERVER, self.run_timeout
            )
        finally:
            self._stop.set()
            if self._injector is not None:
                self._injector.join(timeout=30)
                if self._injector.is_alive():
                    t = time.time()
                    self.actions.record(
                        faults.Action("error", None, t, t, {"error": "injector still running"})
                    )
        self._sample_end()
        assert self.follower is not None
        self.follower.join(timeout=10)
        after = self.handle.usage() if self.handle is not None else {}
        if after and not after["alive"]:
            # the watch polls; this is the last look, as the run ends
            self.net_failures.append(f"netem: {after['reason']}")
        if self._cap is not None and self.wire is None:
            try:
                self.wire = pf.judge_wire(
                    self._cap.verdict(self._pattern), bool(cell.tls), min_bytes=1000
                )
            except CaptureError as exc:
                self.wire = pf.Proof("wire", "mtls", expect, False, f"capture: {exc}")
        wire = self.wire or pf.Proof(
            "wire",
            "mtls",
            "not-run",
            True,
            "not run: this backend gives no access to the pod network",
        )
        if wire.expect == "not-run":
            # Not a proof that passed: say so where the row describes the mTLS overlay.
            self.overlays["mtls"]["wire_proof"] = wire.detail
        else:
            self.proofs.append(wire)
        if not wire.passed:
            self.error = (
                f"proof of enforcement failed: {wire.name} (expected {wire.expect}): {wire.detail}"
            )
        text = "\n".join(cluster.logs(ns, workload.SERVER, container=workload.SERVER))
        self.server_log = text
        self.log = parse_events(text.splitlines(), f"{ns}/fl-server")
        self.events = "".join(
            line + "\n" for line in text.splitlines() if line.startswith("{")
        ).encode()
        if after:
            self.overlays["net"]["emulation"] = between(
                self._net_before, after, len(self.log.of("round_end"))
            )

    def collect(self) -> None:
        """Pod states and the proxies' accepted identities (before the namespace goes)."""
        self.pods = observe.pod_states(self.cluster, self.ns)
        if "released" in self._evidence:
            self._evidence["end"] = evidence.snapshot(self.cluster, self.ns)
        if self.cell.tls and self.cp.run.tls == "sidecar":
            subjects = observe.accepted(self.cluster, self.ns)
            self.overlays["mtls"]["accepted_subjects"] = subjects
            self.overlays["mtls"]["accepted_identities"] = observe.identities(self.cp.run, subjects)

    def cleanup(self) -> None:
        """Delete the namespace (whatever happened) and the capture's work directory."""
        self._stop.set()
        if self._cap is not None:
            self._cap.stop()  # idempotent: a run that never got past round 1
        try:
            self.cluster.delete(namespace=self.ns)
        except ClusterError as exc:
            self.error = self.error or f"cluster: could not delete namespace {self.ns}: {exc}"
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    # ---- resources ---------------------------------------------------------------------
    def _usage(self) -> dict[str, dict[str, ContainerUsage]] | None:
        if isinstance(self.cluster, MeasuresUsage):
            return self.cluster.usage(self.ns)
        return None

    def _delayline_cpu(self) -> float | None:
        if self.handle is None:
            return None
        pid = self.handle.status(check_rules=False).pid
        return cpu_seconds(pid) if pid is not None else None

    def sample(self) -> Sample:
        """The arm's cgroup counters, the delay line's and the whole machine's CPU time, now."""
        return Sample(self._usage(), self._delayline_cpu(), *machine_cpu_seconds())

    def _sample_start(self) -> None:
        s = self.sample()
        self._usage_start, self._delayline_start = s.usage, s.delayline

    def _sample_end(self) -> None:
        """The cell's resources over its rounds (usage.resources)."""
        s = self.sample()
        self.resources = usage.resources(
            s,
            self._usage_start,
            self._delayline_start,
            self.round_extra if self.hold_rounds else {},
            has_delayline=self.handle is not None,
        )

    def record_round(self, r: int, position: int, before: Sample, after: Sample) -> None:
        """Round ``r`` of this arm ran at ``position`` of its round's order (usage.round_extra)."""
        self.round_extra[r] = usage.round_extra(position, before, after)

    # ---- the row -----------------------------------------------------------------------
    def row(self) -> tuple[dict[str, Any], bytes]:
        """The cell's row (rows.build) and the server's raw event log."""
        cell, fault = self.cell, self.cp.fault
        error = self.error
        labels: list[taxonomy.Label] = []
        if fault is not None:
            done = self.actions.all()
            self.overlays["fault"] = {"name": fault.name, "actions": [asdict(a) for a in done]}
            # an injector's own failure (a probe's "error" is its finding, not a failure)
            broken = [
                a.detail
                for a in done
                if a.kind == "error" or (a.kind == "delayline-kill" and "error" in a.detail)
            ]
            if broken and error is None:
                # a fault that was not injected as planned: the cell measured something else
                error = f"fault {fault.name}: not injected as planned: {broken[0]}"
        if self.net_failures:
            # The emulation stopped during the run: nothing measured after that is at this NET.
            msg = self.net_failures[0]
            error = msg if msg.startswith("netem:") else f"netem: {msg}"
        seen: dict[str, Any] = {}
        if "released" in self._evidence:
            # Blind: the taxonomy sees the evidence, never which fault was injected.
            ev = evidence.run_evidence(
                self.cp.run.clients,
                self.log,
                self.pods,
                self._evidence.get("ready"),
                self._evidence["released"],
                self._evidence.get("end"),
                self.net_failures[0] if self.net_failures else None,
            )
            labels = taxonomy.classify(ev)
            seen = evidence.summary(ev)
        if fault is not None:
            self.overlays["fault"].update(faults.agreement(fault, labels))
        row = rows.build(
            cell,
            self.log,
            started_wall=self.started,
            proofs=[p.to_dict() for p in self.proofs],
            overlays=self.overlays,
            pods=self.pods,
            backend={
                "name": self.backend.name,
                "note": self.backend.note,
            },
            labels=labels,
            evidence=seen,
            error=error,
            round_extra=self.round_extra,
            resources=self.resources,
            design=self.design,
            context=self.context,
        )
        return row, self.events
