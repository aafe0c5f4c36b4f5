"""The local cluster backend: Kubernetes objects realised with namespaces, cgroups, processes.

A :class:`LocalCluster` is a "node" network namespace with a bridge, a cluster DNS pod, and
one network namespace per pod (see :mod:`.topology`, :mod:`.pods`, :mod:`.dns`). It accepts the
objects :mod:`.admission` admits, keeps them, and calls registered overlays (:mod:`.view`)
whenever pods, namespaces or overlay objects change. Everything it creates is recorded in a
state directory first (:mod:`.state`), so a killed harness leaves nothing that the next start
does not remove.

This module is the cluster's API and its bookkeeping; the parts live in :mod:`.podbuild`
(admitted pod -> runnable pod), :mod:`.snapshot` (the view overlays get), :mod:`.services`
(Service DNS records), :mod:`.waiting` (ready/finished polling), :mod:`.logfiles` (reading and
following logs) and :mod:`.accounting` (cgroup usage, namespace counters).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path

from k8s_fixtures.cluster import (
    ClusterError,
    ContainerUsage,
    ExecResult,
    NetnsCounters,
    Obj,
    ObjectRef,
    Objects,
    PodStatus,
)
from k8s_fixtures.local import (
    accounting,
    dns,
    logfiles,
    podbuild,
    services,
    snapshot,
    state,
    volumes,
    waiting,
)
from k8s_fixtures.local.admission import Key, Plan, admit, key_of, order
from k8s_fixtures.local.cgroups import CgroupRoot, remove_dir
from k8s_fixtures.local.pods import DEFAULT_PATH, ContainerRun, PodRun, Supervisor
from k8s_fixtures.local.privileges import Holder, Mode, detect, tool
from k8s_fixtures.local.topology import BRIDGE, Node, TopologyError, host_route_overlap
from k8s_fixtures.local.view import ClusterView, Overlay, PodInfo
from k8s_fixtures.local.waiting import POLL as POLL  # re-exported: it was defined here
from k8s_fixtures.local.zygote import Zygote
from k8s_fixtures.manifests import load, ref, selector_matches


def _ns_obj(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


class LocalCluster:
    """A cluster on this machine. Use as a context manager, or call :meth:`start`/:meth:`teardown`.

    ``name`` prefixes every namespace it creates (default ``ztfl-<random>``); ``cidr`` is the
    pod network; ``state_root`` defaults to :func:`state.default_root`; ``mode`` forces
    ``"root"`` or ``"rootless"`` (default: root if possible). Resource limits need cgroups
    (root); without them ``limits`` says so in :attr:`warnings` and limits are not enforced.
    """

    def __init__(self, name: str | None = None, *, cidr: str = "10.244.0.0/16",
                 state_root: Path | None = None, mode: Mode | None = None,
                 prefix: str = "ztfl",
                 zygotes: Sequence[tuple[Sequence[str], Mapping[str, str]]] = ()) -> None:
        self.name = name or f"{prefix}-{secrets.token_hex(3)}"
        self.cidr = cidr
        self.state_root = Path(state_root) if state_root else state.default_root()
        self._want_mode = mode
        self.mode: Mode | None = None
        self.warnings: list[str] = []
        self.cleaned: dict[str, list[str]] = {}  # stale clusters removed at start
        self.timings: dict[str, float] = {}
        self._lock = threading.RLock()
        self._objects: dict[Key, Obj] = {}
        self._pods: dict[tuple[str, str], PodRun] = {}
        self._overlays: list[Overlay] = []
        self._state: state.StateDir | None = None
        self._holder: Holder | None = None
        self._cgroups: CgroupRoot | None = None
        self._node: Node | None = None
        self._sup: Supervisor | None = None
        self._hosts_text = ""
        self._closed = False
        # per zygote (.zygote): the modules it pre-imports for the Python containers it
        # forks, and the environment (from the manifests) those containers have
        self._zygotes = [(tuple(m), dict(e)) for m, e in zygotes]

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def start(self) -> LocalCluster:
        t0 = time.perf_counter()
        self.mode = detect(self._want_mode)
        try:
            net = ipaddress.IPv4Network(self.cidr)
        except ValueError as e:
            raise ClusterError(f"cluster {self.name}: cidr {self.cidr!r}: {e}") from None
        if net.num_addresses < 8:
            raise ClusterError(f"cluster {self.name}: cidr {self.cidr}: too small (need /29)")
        overlap = host_route_overlap(self.cidr)
        if overlap:
            raise ClusterError(f"cluster {self.name}: cidr {self.cidr} overlaps the host "
                               f"route '{overlap}'; choose another pod CIDR")
        self.cleaned = state.clean_stale(self.state_root)
        rec = state.Record(self.name, self.mode, os.getpid(), False, self.cidr)
        try:
            self._state = state.StateDir(self.state_root, self.name, rec)
        except FileExistsError as e:
            raise ClusterError(str(e)) from None
        try:
            self._create()
        except BaseException:
            self.teardown()
            raise
        self.timings["up_s"] = time.perf_counter() - t0
        return self

    def _create(self) -> None:
        st = self._state
        assert st is not None
        wrap: list[str] = []
        if self.mode == "rootless":
            self._holder = Holder()
            st.add(pid=self._holder.pid)
            wrap = self._holder.prefix
            self.warnings.append("rootless: resources.limits are not enforced (no cgroups)")
        else:
            cg = CgroupRoot.detect(self.name)
            if isinstance(cg, str):
                self.warnings.append(f"resources.limits are not enforced: {cg}")
            else:
                taken = [d for d in cg.dirs if d.exists()]
                if taken:
                    raise ClusterError(f"cluster {self.name}: cgroup {taken[0]} already exists "
                                       "(another cluster with the same name?)")
                st.record.cgroups.extend(str(d) for d in cg.dirs)
                st.save()
                self._cgroups = cg
                cg.create()
        self._node = Node(self.name, self.cidr, wrap=tuple(wrap),
                          on_netns=lambda ns: st.add(netns=ns))
        try:
            self._node.create()
        except TopologyError as e:
            raise ClusterError(f"cluster {self.name}: cannot create the node namespace: {e}") \
                from None
        self._sup = Supervisor(wrap, lambda pid, alive: st.add(pid=pid) if alive
                               else st.forget(pid=pid))
        for i, (modules, zenv) in enumerate(self._zygotes):
            env = {"PATH": DEFAULT_PATH, "HOME": "/root", state.MARKER: st.marker, **zenv}
            self._sup.zygotes.append(Zygote(st.path / f"zygote{i}.sock", modules, env, wrap))
            st.add(pid=self._sup.zygotes[-1].proc.pid)
        (st.path / "dns").mkdir()
        self._hosts_file.write_text("")
        self.apply([_ns_obj("default"), _ns_obj(dns.NAMESPACE),
                    dns.pod_manifest(tool("dnsmasq"), self._hosts_file)])
        self.wait_ready(dns.NAMESPACE, names=[dns.POD], timeout=10)

    @property
    def _hosts_file(self) -> Path:
        assert self._state is not None
        return self._state.path / "dns" / "hosts"

    def detach(self) -> None:
        """Stop owning the cluster but leave it running (for ``ztfl cluster up --detach``):
        its record is marked detached, so only ``ztfl cluster down NAME`` removes it."""
        with self._lock:
            if self._closed or self._state is None or self._sup is None:
                return
            self._closed = True
            self._sup.close(keep_running=True)
            self._state.record.detached = True
            self._state.save()
            self._state.close(remove=False)

    def teardown(self) -> None:
        """Remove everything (overlays, pods, namespaces, cgroups, state). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            errors: list[str] = []

            def step(what: str, fn: Callable[[], object]) -> None:
                # Every step runs even if an earlier one failed; the state directory is
                # kept when anything failed, so `ztfl cluster clean` can finish the job.
                try:
                    fn()
                except Exception as e:
                    errors.append(f"{what}: {e}")

            for o in reversed(self._overlays):
                step(f"overlay {type(o).__name__}", partial(o.close, self))
            if self._sup is not None:
                step("pods", self._sup.close)
            if self._node is not None:
                node = self._node
                step("pod namespaces", lambda: node.remove_pods(list(node.pods)))
                step("node namespace", node.destroy)
            if self._cgroups is not None:
                for d in self._cgroups.dirs:
                    step(f"cgroup {d}", partial(remove_dir, d))
            if self._holder is not None:
                step("rootless namespace holder", self._holder.stop)
            if self._state is not None:
                self._state.close(remove=not errors)
            if errors:
                raise ClusterError(f"cluster {self.name}: teardown left: {'; '.join(errors)}")

    # ------------------------------------------------------------------ for overlays

    @property
    def node_netns(self) -> str:
        """The node namespace (holds the bridge all pod veths attach to)."""
        return f"{self.name}-node"

    @property
    def bridge(self) -> str:
        return BRIDGE

    @property
    def gateway(self) -> str:
        """The bridge's address in the pod network (the pods' default route)."""
        assert self._node is not None
        return self._node.gateway

    @property
    def dns_ip(self) -> str:
        return self._pods[(dns.NAMESPACE, dns.POD)].link.ip

    @property
    def state_dir(self) -> Path:
        assert self._state is not None
        return self._state.path

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` as it must be run to see this cluster's namespaces (rootless: nsenter)."""
        return [*self._holder.prefix, *argv] if self._holder is not None else list(argv)

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 30) -> str:
        """Run a command (e.g. ``ip netns exec NETNS nft -f -``); raise ClusterError on failure."""
        r = subprocess.run(self.command(argv), input=input, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            first = (r.stderr.strip().splitlines() or [str(r.returncode)])[0]
            raise ClusterError(f"{' '.join(argv)}: {first}")
        return r.stdout

    def add_overlay(self, overlay: Overlay) -> None:
        """Register an overlay: its kinds become accepted; it is synced now and on changes."""
        with self._lock:
            self._overlays.append(overlay)
            overlay.sync(self, self.view())

    def view(self) -> ClusterView:
        """A snapshot of namespaces, pods (netns, IP, labels, annotations, ports) and overlay
        objects."""
        with self._lock:
            assert self._node is not None
            return snapshot.snapshot(self.node_netns, self._node.gateway, self.cidr,
                                     self._objects, self._pods, self._overlays)

    def _sync_overlays(self) -> None:
        if self._overlays:
            v = self.view()
            for o in self._overlays:
                o.sync(self, v)

    # ------------------------------------------------------------------ apply / delete

    def apply(self, objects: Objects) -> list[ObjectRef]:
        batch = load(objects)
        with self._lock:
            self._check_open()
            assert self._node is not None
            overlay_kinds = {k: o for o in self._overlays for k in o.kinds}
            free = self._node.network.num_addresses - 3 - len(self._node.pods)
            plan = admit(batch, self._objects,
                         {k: p.owner for k, p in self._pods.items()},
                         set(overlay_kinds), free,
                         {k: o.validate for k, o in overlay_kinds.items()})
            self._execute(plan)
        return [ref(o) for o in batch]

    def _check_open(self) -> None:
        if self._closed or self._node is None:
            raise ClusterError(f"cluster {self.name} is not running")

    def _execute(self, plan: Plan) -> None:
        assert self._node is not None and self._sup is not None
        self._stop_pods([self._pods[k] for k in plan.delete_pods if k in self._pods])
        before = dict(self._objects)
        created: list[PodRun] = []
        try:
            for k in sorted(plan.store, key=lambda k: order(k[0])):
                self._objects[k] = plan.store[k]
            links = self._node.add_pods([f"{p.namespace}.{p.name}" for p in plan.new_pods])
            for new, link in zip(plan.new_pods, links, strict=True):
                assert self._state is not None
                pod = podbuild.pod_run(new, link, self._state, self._objects, self._pods,
                                       self._cgroups)
                self._pods[pod.key] = pod
                created.append(pod)
            self._sync_overlays()
            for pod in created:
                self._sup.start(pod)
            self._refresh_dns()
        except BaseException:
            self._stop_pods(created)
            self._objects = before
            with contextlib.suppress(Exception):
                self._sync_overlays()
                self._refresh_dns()
            raise

    def _stop_pods(self, pods: list[PodRun]) -> None:
        assert self._node is not None and self._sup is not None
        if not pods:
            return
        self._sup.stop(pods)
        self._node.remove_pods([f"{p.namespace}.{p.name}" for p in pods])
        for p in pods:
            self._pods.pop(p.key, None)
            state.remove_tree(p.dir)

    def delete(self, objects: Objects | None = None, *, namespace: str | None = None) -> None:
        with self._lock:
            self._check_open()
            keys: list[Key] = []
            if objects is not None:
                keys = [key_of(o) for o in load(objects)]
            if namespace is not None:
                keys.append(("Namespace", "", namespace))
            namespaces = {k[2] for k in keys if k[0] == "Namespace"}
            if dns.NAMESPACE in namespaces:
                raise ClusterError(f"namespace {dns.NAMESPACE} holds the cluster DNS and "
                                   "cannot be deleted (tear the cluster down instead)")
            doomed: list[PodRun] = []
            for kind, ns, name in keys:
                for p in self._pods.values():
                    hit = (
                        (kind == "Namespace" and p.namespace == name)
                        or (kind == "Pod" and p.key == (ns, name) and p.owner is None)
                        or (p.namespace == ns and p.owner == f"{kind}/{name}")
                    )
                    if hit and p not in doomed:
                        doomed.append(p)
            self._stop_pods(doomed)
            for k in list(self._objects):
                if k in keys or k[1] in namespaces:
                    del self._objects[k]
            self._sync_overlays()
            self._refresh_dns()

    def _refresh_dns(self) -> None:
        text = services.hosts_text(self._objects, self._pods)
        if text == self._hosts_text:
            return
        services.write_hosts(self._hosts_file, text)
        self._hosts_text = text
        services.reload(self._pods)

    # ------------------------------------------------------------------ reading

    def _pod(self, namespace: str, pod: str) -> PodRun:
        p = self._pods.get((namespace, pod))
        if p is None:
            raise ClusterError(f"pod {namespace}/{pod} does not exist in cluster {self.name}")
        return p

    def pod_status(self, namespace: str, pod: str) -> PodStatus:
        assert self._sup is not None
        with self._lock:
            p = self._pod(namespace, pod)
        # not under the cluster's lock: a readiness probe reads /proc or runs a command (up
        # to its timeout), and every other arm's cluster call would wait for it
        self._sup.refresh_ready(p)
        return p.status()

    def pods(self, namespace: str, *,
             selector: Mapping[str, str] | None = None) -> list[PodStatus]:
        with self._lock:
            keys = [k for k, p in self._pods.items()
                    if p.namespace == namespace and selector_matches(selector or {}, p.labels)]
        return [self.pod_status(*k) for k in sorted(keys)]

    def pod_info(self, namespace: str, pod: str) -> PodInfo:
        """Network facts of one pod (netns, IP, host-side veth, labels, ports)."""
        return self.view().pod(namespace, pod)

    def wait_ready(self, namespace: str, *, names: Iterable[str] | None = None,
                   selector: Mapping[str, str] | None = None,
                   timeout: float = 60.0) -> list[PodStatus]:
        wanted = list(names) if names is not None else None

        def statuses() -> list[PodStatus]:
            if wanted is None:
                return self.pods(namespace, selector=selector)
            with self._lock:
                missing = [n for n in wanted if (namespace, n) not in self._pods]
            if missing:
                raise ClusterError(f"no pod {namespace}/{missing[0]} in cluster {self.name}")
            return [self.pod_status(namespace, n) for n in wanted]

        return waiting.until_ready(namespace, statuses, self._describe, timeout)

    def _describe(self, s: PodStatus) -> str:
        return waiting.describe(
            s, lambda container: self.logs(s.namespace, s.name, container=container))

    def wait_finished(self, namespace: str, pod: str, *, timeout: float = 60.0) -> PodStatus:
        return waiting.until_finished(
            namespace, pod, lambda: self.pod_status(namespace, pod), timeout)

    def _container(self, p: PodRun, container: str | None) -> ContainerRun:
        """The named container (init containers included), by default the first regular one."""
        if container is None:
            return p.containers[0]
        for c in p.all_containers:
            if c.spec.name == container:
                return c
        names = ", ".join(c.spec.name for c in p.all_containers)
        raise ClusterError(f"pod {p.namespace}/{p.name} has no container {container!r} "
                           f"(it has {names})")

    def logs(self, namespace: str, pod: str, *, container: str | None = None,
             follow: bool = False, timeout: float | None = None) -> Iterator[str]:
        """The container's output; ``container`` may name an init container. With ``follow``
        a container that has not started yet (waiting for init containers) is waited for, until
        it ends or the pod ends without it."""
        with self._lock:
            p = self._pod(namespace, pod)
            c = self._container(p, container)
        return logfiles.read_log(p, c, follow, timeout, self._pods)

    def exec(self, namespace: str, pod: str, argv: list[str], *, container: str | None = None,
             timeout: float = 30.0, input: str | None = None) -> ExecResult:
        assert self._sup is not None
        with self._lock:
            p = self._pod(namespace, pod)
            c = self._container(p, container)
        return self._sup.exec(p, c, argv, timeout=timeout, input=input)

    def signal(self, namespace: str, pod: str, container: str, sig: int) -> None:
        """Signal the container's main process (its PID 1 on Kubernetes) via the supervisor."""
        assert self._sup is not None
        with self._lock:
            p = self._pod(namespace, pod)
            c = self._container(p, container)
        self._sup.signal(p, c, sig)

    def cpu_usage_ns(self, namespace: str, pod: str, container: str | None = None) -> int | None:
        """CPU time the container's cgroup has used (None without cgroups)."""
        c = self._container(self._pod(namespace, pod), container)
        return c.cgroup.cpu_usage_ns() if c.cgroup else None

    def touch(self, namespace: str, pod: str, container: str, path: str) -> bool:
        """:class:`~k8s_fixtures.cluster.CreatesFiles` (:func:`.volumes.touch`)."""
        return volumes.touch(self._container(self._pod(namespace, pod), container).mounts, path)

    def container_pids(self, namespace: str, pod: str, container: str | None = None) -> list[int]:
        """Every process in the container's cgroup (main, forked by a zygote, exec'd; empty
        without cgroups), as the machine sees it."""
        c = self._container(self._pod(namespace, pod), container)
        return c.cgroup.pids() if c.cgroup else []

    def netns_counters(self, namespace: str) -> dict[str, NetnsCounters]:
        """Every pod's network namespace counters so far (policy refusals, TCP retransmissions
        and timeouts, impairment drops: :mod:`k8s_fixtures.local.netns_counters`)."""
        with self._lock:
            pods = [(p.name, p.link.netns) for p in self._pods.values()
                    if p.namespace == namespace]
        return accounting.counters_of(pods, self.run)

    def usage(self, namespace: str) -> dict[str, dict[str, ContainerUsage]]:
        """Every pod's containers' CPU time and peak memory so far, from their cgroups (the
        harness reads it between rounds; None values without cgroups, e.g. rootless)."""
        with self._lock:
            pods = [p for p in self._pods.values() if p.namespace == namespace]
        return accounting.usage_of(pods)

