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
import json
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fl_app.events import ParsedLog, parse_events
from k8s_fixtures import proofs as pf
from k8s_fixtures import workload
from k8s_fixtures.cluster import Cluster, ClusterError, ContainerUsage, MeasuresUsage
from k8s_fixtures.proc import cpu_seconds, machine_cpu_seconds
from k8s_fixtures.tls.secret import SECRET_TYPE, validate_secret
from k8s_fixtures.tls.sidecar import PROXY_CONTAINER
from pytest_ztfl import evidence, faults, rows, taxonomy
from pytest_ztfl.backends import Backend, cell_unsupported
from pytest_ztfl.cellplan import HOLD_FILE, READY_TIMEOUT, CellPlan, plan_cell
from pytest_ztfl.live import MILESTONE, ROUND, Progress, silent
from pytest_ztfl.matrix import Cell
from pytest_ztfl.warning_types import ZtflPolicyWarning

if TYPE_CHECKING:
    from k8s_fixtures.netem.overlay import NetemHandle
    from k8s_fixtures.tls.capture import WireCapture

ROUND_EVENTS = ("round_hold", "round_start", "round_end")


def _pattern(cell: Cell) -> bytes:
    """48 bytes of the initial global model: round 1 sends them to every client."""
    from fl_app.models import build_model
    from fl_app.tensors import state_to_arrays

    first = next(
        iter(state_to_arrays(build_model(cell.workload.model, cell.seed).state_dict()).values())
    )
    return first.tobytes()[:48]


class Follower(threading.Thread):
    """Streams the server's log while the run goes: progress lines, and an event per
    (event type, round) seen, so the schedule can wait for a round's hold, start and end."""

    def __init__(self, cluster: Cluster, ns: str, progress: Progress) -> None:
        super().__init__(daemon=True)
        self.cluster, self.ns, self.progress = cluster, ns, progress
        self._seen: dict[tuple[str, int | None], threading.Event] = {}
        self._logged: set[tuple[str, int | None]] = set()
        self._done = False
        self._lock = threading.Lock()

    def event(self, kind: str, r: int | None = None) -> threading.Event:
        """Set once the server logged ``kind`` (of round ``r``), or its log ended without."""
        with self._lock:
            ev = self._seen.setdefault((kind, r), threading.Event())
            if self._done:
                ev.set()
            return ev

    def round_started(self, n: int) -> threading.Event:
        return self.event("round_start", n)

    @property
    def round1_done(self) -> threading.Event:
        return self.event("round_end", 1)

    def saw(self, kind: str, r: int | None = None) -> bool:
        """Whether the server really logged ``kind`` (of round ``r``)."""
        with self._lock:
            return (kind, r) in self._logged

    @property
    def ended(self) -> bool:
        """The log ended (run_end, or the server is gone)."""
        return self._done

    def run(self) -> None:
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
                kind = e.get("event")
                if kind == "round_end":
                    self.progress(
                        f"  round {e['round']}: {e['duration']:.3f} s, "
                        f"{len(e['participants'])} participants"
                        f"{'' if e['ok'] else ' FAILED'}",
                        ROUND,
                    )
                key = (kind, int(e["round"])) if kind in ROUND_EVENTS else (kind, None)
                with self._lock:
                    self._logged.add(key)
                self.event(*key).set()
                if kind == "run_end":
                    break
        except ClusterError:
            pass
        finally:
            with self._lock:
                self._done = True
                for ev in self._seen.values():
                    ev.set()


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


@dataclass(frozen=True)
class Sample:
    """Counters read around a round: the arm's cgroups (None: no access), the delay line's
    CPU time, the machine's busy and stolen CPU time (seconds since boot)."""

    usage: dict[str, dict[str, ContainerUsage]] | None
    delayline: float | None
    machine: float
    steal: float


class Arm:
    """One cell on ``cluster``: its phases, its observations, and the row they make."""

    def __init__(
        self,
        backend: Backend,
        cell: Cell,
        progress: Progress = silent,
        *,
        hold_rounds: bool = False,
    ) -> None:
        self.backend = backend
        self.cluster, self.cell, self.progress = backend.cluster, cell, progress
        self.hold_rounds = hold_rounds
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
        if self.handle is not None:
            self.overlays["net"].update(self.handle.metadata())
            self.handle.watch(lambda exc: self.net_failures.append(str(exc)))
        elif run.net_profile is not None and run.netem_init is not None:
            # kind/kube: each client pod's init container ran tc netem before the pod could
            # start (a failed init container keeps the pod from becoming ready)
            self.overlays["net"].update(
                mechanism="netem",
                why="tc netem by each client pod's init container (ztfl-netem-init)",
            )
        elif run.net_profile is not None:
            raise ClusterError(f"network profile {cell.net} was not applied to {ns}")
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
        from k8s_fixtures.tls.capture import CaptureError, WireCapture

        cluster, cell, ns = self.cluster, self.cell, self.ns
        self._net_before = self.handle.usage() if self.handle is not None else {}
        self.follower = Follower(cluster, ns, self.progress)
        server_ip = next(p.ip for p in cluster.pods(ns) if p.name == workload.SERVER)
        if server_ip is None:
            raise ClusterError(f"{ns}/{workload.SERVER} has no IP")
        capture = self.backend.capture
        expect = "tls-only" if cell.tls else "plaintext"
        if capture is not None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ztfl-capture-")
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
        self._pattern = _pattern(cell) if self._cap is not None else b""
        self.follower.start()
        self._sample_start()
        self._evidence["released"] = evidence.snapshot(cluster, ns)
        cluster.exec(ns, workload.SERVER, ["touch", HOLD_FILE], container=workload.SERVER)
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
        self.cluster.exec(
            self.ns, workload.SERVER, ["touch", f"{HOLD_FILE}.{r}"], container=workload.SERVER
        )

    def round1_done(self, timeout: float) -> None:
        """After round 1: stop the capture (judged after the run: parsing it while rounds go on
        would steal CPU from the workload being measured), or, in mesh mode, read the server
        proxy's counters while the server still runs."""
        from k8s_fixtures.tls.capture import CaptureError

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
            from k8s_fixtures.proofs_mesh import mesh_round

            self.wire, admitted = mesh_round(self.cluster, replace(self.cp.proofs, tls="mesh"))
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
                _wait_container_done(self.cluster, self.ns, pod, container, timeout)

    def finish(self) -> None:
        """Wait for the run's end, stop the injector, judge the capture, read the logs."""
        from k8s_fixtures.tls.capture import CaptureError

        cluster, cell, ns = self.cluster, self.cell, self.ns
        expect = "tls-only" if cell.tls else "plaintext"
        try:
            _wait_container_done(cluster, ns, workload.SERVER, workload.SERVER, self.run_timeout)
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
            from k8s_fixtures.netem.account import between

            self.overlays["net"]["emulation"] = between(
                self._net_before, after, len(self.log.of("round_end"))
            )

    def collect(self) -> None:
        """Pod states and the proxies' accepted identities (before the namespace goes)."""
        self.pods = _pod_states(self.cluster, self.ns)
        if "released" in self._evidence:
            self._evidence["end"] = evidence.snapshot(self.cluster, self.ns)
        if self.cell.tls and self.cp.run.tls == "sidecar":
            subjects = _accepted(self.cluster, self.ns)
            self.overlays["mtls"]["accepted_subjects"] = subjects
            self.overlays["mtls"]["accepted_identities"] = _identities(self.cp.run, subjects)

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
        """The cell's resources over its rounds: CPU seconds by pod and container (the TLS
        proxies apart), peak memory, the delay line's CPU."""
        s = self.sample()
        use, dl = s.usage, s.delayline
        if use is None:
            self.resources = {"source": None, "note": "this backend gives no access to cgroups"}
            return
        if self.hold_rounds and self.round_extra:
            window = "the arm's own rounds (summed between release and the next hold)"
            cpu = _sum_rounds(self.round_extra)
            dl_s = sum(x.get("cpu_delayline_seconds") or 0.0 for x in self.round_extra.values())
        else:
            window = "from the release of round 1 to the run's end"
            cpu = _cpu_between(self._usage_start or {}, use)
            dl_s = (
                (dl - self._delayline_start) if dl is not None and self._delayline_start else None
            )
        pods = {
            pod: {
                c: {
                    "cpu_seconds": cpu.get(pod, {}).get(c),
                    "memory_peak_bytes": u.memory_peak_bytes,
                }
                for c, u in per.items()
            }
            for pod, per in use.items()
        }
        self.resources = {
            "source": "cgroup",
            "window": window,
            "pods": pods,
            "delayline_cpu_seconds": dl_s if self.handle is not None else None,
        }

    def record_round(self, r: int, position: int, before: Sample, after: Sample) -> None:
        """Round ``r`` of this arm ran at ``position`` of its round's order; keep its CPU, and
        the machine's: what was not this arm's (``cpu_other_seconds``: the harness, the other
        arms' idle pods, any other job) is the load the round met."""
        extra: dict[str, Any] = {"position": position}
        machine = after.machine - before.machine
        extra["cpu_machine_seconds"] = round(machine, 6)
        extra["steal_seconds"] = round(after.steal - before.steal, 6)
        if before.usage is not None and after.usage is not None:
            per = _cpu_between(before.usage, after.usage)
            extra["cpu_by_container"] = per
            total = proxy = 0.0
            for pod in per.values():
                for c, s in pod.items():
                    total += s
                    proxy += s if c == PROXY_CONTAINER else 0.0
            extra["cpu_seconds"] = round(total, 6)
            extra["cpu_proxy_seconds"] = round(proxy, 6)
        if before.delayline is not None and after.delayline is not None:
            extra["cpu_delayline_seconds"] = round(after.delayline - before.delayline, 6)
        if "cpu_seconds" in extra:
            own = extra["cpu_seconds"] + extra.get("cpu_delayline_seconds", 0.0)
            # clock ticks (10 ms) against cgroup nanoseconds: a small negative is rounding
            extra["cpu_other_seconds"] = round(max(machine - own, 0.0), 6)
        self.round_extra[r] = extra

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
        )
        return row, self.events


def _cpu_between(
    a: dict[str, dict[str, ContainerUsage]], b: dict[str, dict[str, ContainerUsage]]
) -> dict[str, dict[str, float]]:
    """CPU seconds each container used from sample ``a`` to sample ``b`` (containers in both
    with a reading; a restarted container's counter starts again at its new cgroup)."""
    out: dict[str, dict[str, float]] = {}
    for pod, per in b.items():
        for c, u in per.items():
            u0 = a.get(pod, {}).get(c)
            if u.cpu_ns is None or u0 is None or u0.cpu_ns is None:
                continue
            out.setdefault(pod, {})[c] = round(max(u.cpu_ns - u0.cpu_ns, 0) / 1e9, 6)
    return out


def _sum_rounds(extra: dict[int, dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for x in extra.values():
        for pod, per in x.get("cpu_by_container", {}).items():
            for c, s in per.items():
                out.setdefault(pod, {})[c] = round(out.get(pod, {}).get(c, 0.0) + s, 6)
    return out


def _wait_container_done(
    cluster: Cluster, ns: str, pod: str, container: str, timeout: float
) -> None:
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
        time.sleep(0.05)


def _pod_states(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "phase": p.phase,
            "restarts": p.restart_count,
            "reason": p.reason,
            "exit_code": p.exit_code,
        }
        for p in cluster.pods(ns)
    ]


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


def _accepted(cluster: Cluster, ns: str) -> list[str]:
    from k8s_fixtures.tls.stunnel_log import stunnel_accepted_subjects

    text = "\n".join(cluster.logs(ns, workload.SERVER, container=PROXY_CONTAINER))
    return sorted(set(stunnel_accepted_subjects(text)))
