"""The NET overlay API: apply a profile (or a per-client plan) to client<->server links.

``apply()`` validates, picks the mechanism (kernel netem if the kernel has it, else the userspace
delay line; ``mechanism=`` forces one), installs everything, and returns a :class:`NetemHandle`.
The handle changes profiles during a run (``change``/``start_schedule``), reports ``status()``,
raises :class:`NetemFailure` (failure class ``netem``) from ``check()`` when the delay line died,
and removes every rule, qdisc and process on ``stop()``, even after errors.

Several handles may be in force in one node namespace at once (one per shaped Kubernetes
namespace, each with its own delay line). NFQUEUE numbers belong to a network namespace, so
every handle gets a :class:`QueueSlot` from :data:`ALLOCATOR`: a range of queue numbers no other
live handle of that node namespace uses and an iptables chain of its own
(``ZTFL-NETEM-<first queue>``). ``apply`` reserves one per handle and releases it on ``stop()``,
unless the caller reserved it (``slot=``) and so releases it itself. The allocator also
reference-counts the handles that need ``net.bridge.bridge-nf-call-iptables=1`` in a node
namespace, so the sysctl goes back to its old value only when the last of them stops.

The parts: :mod:`.state` (errors, links, status), :mod:`.queues` (queue slots and the
allocator), :mod:`.classes` (profiles as delay-line classes); their names are importable from
here as before.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from k8s_fixtures.proc import cpu_seconds

from . import rules, tc
from .classes import DELAYLINE_MAX_PPS, class_spec, queue_max_len
from .detect import netem_available, probe_netem
from .plan import NetPlan, Step
from .process import ClassConfig, DelayLineError, DelayLineProcess
from .profiles import Profile
from .queues import ALLOCATOR, QUEUE_FIRST, QUEUE_LAST, QueueAllocator, QueueSlot
from .state import LinkLike, LinkState, NetemError, NetemFailure, NetemStatus

# The names this module has always offered; most live in .state, .queues and .classes.
__all__ = [
    "ALLOCATOR",
    "DELAYLINE_MAX_PPS",
    "MECHANISMS",
    "QUEUE_FIRST",
    "QUEUE_LAST",
    "LinkLike",
    "LinkState",
    "NetemError",
    "NetemFailure",
    "NetemHandle",
    "NetemStatus",
    "QueueAllocator",
    "QueueSlot",
    "apply",
    "choose_mechanism",
    "class_spec",
    "queue_max_len",
]

MECHANISMS = ("auto", "netem", "delayline")


def choose_mechanism(plan: NetPlan, requested: str) -> tuple[str, str]:
    """(mechanism, why). ``none`` if nothing is ever impaired or shaped and nothing forced."""
    if requested not in MECHANISMS:
        raise NetemError(f"mechanism {requested!r}: expected one of {', '.join(MECHANISMS)}")
    if requested == "auto" and all(p.is_null for p in plan.profiles()):
        return "none", "every profile in the plan is a null profile"
    if requested == "delayline":
        return "delayline", "forced by the caller"
    ok, evidence = probe_netem()
    if requested == "netem":
        if not ok:
            raise NetemError(f"mechanism netem forced but the kernel has no netem: {evidence}")
        return "netem", "forced by the caller; " + evidence
    return ("netem", evidence) if ok else ("delayline", evidence)


def link_mtus(netns: str) -> dict[str, int]:
    """Every interface's MTU in ``netns`` (one ``ip`` call): how many frames a GSO packet of
    a client link will be (:func:`.shaper.frame_bytes`)."""
    out = subprocess.run(["ip", "-n", netns, "-o", "link", "show"], capture_output=True,
                         text=True, timeout=30).stdout
    mtus: dict[str, int] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) > 4 and "mtu" in f:
            mtus[f[1].rstrip(":").split("@")[0]] = int(f[f.index("mtu") + 1])
    return mtus


class NetemHandle:
    """The NET overlay in force on a set of links. Build it with :func:`apply`."""

    def __init__(self, plan: NetPlan, node_netns: str, links: list[LinkState], mechanism: str,
                 why: str, workdir: Path | None, heartbeat_s: float,
                 slot: QueueSlot | None = None, owns_slot: bool = False) -> None:
        self.plan = plan
        self.node_netns = node_netns
        self.links = links
        self.mechanism = mechanism
        self.why = why
        self.workdir = workdir
        self.heartbeat_s = heartbeat_s
        self.delayline: DelayLineProcess | None = None
        self.changes: list[dict[str, Any]] = []
        self.slot = slot  # the queue numbers of ``links`` and the chain of their rules
        self._owns_slot = owns_slot  # released by stop(); else the caller releases it
        self._bridge_on = False
        self._rules_on = False
        self._queues_free = False  # set by stop() once no delay line of ours can hold them
        self._stopped = False
        self._stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.final_status: NetemStatus | None = None
        self._mtus: dict[str, int] = {}  # the node's interfaces' MTUs (delay line classes)

    # -- install -------------------------------------------------------------------------
    def _install(self) -> None:
        if self.mechanism == "delayline":
            self._start_delayline()
        for ls in self.links:
            self._shape(ls)

    @property
    def holds_queues(self) -> bool:
        """True until :meth:`stop` has ended the delay line (a failed stop keeps it True: the
        slot must not be handed out again while a process may still be bound to it)."""
        return not self._queues_free

    @property
    def chain(self) -> str | None:
        """The iptables chain of this handle's NFQUEUE rules (None without a slot)."""
        return None if self.slot is None else self.slot.chain

    def _start_delayline(self) -> None:
        assert self.workdir is not None
        if self.slot is None:
            raise NetemError("the delay line needs a queue slot (build the handle with apply)")
        profiles = self.plan.profiles() + [ls.profile for ls in self.links]
        classes: list[ClassConfig] = []
        self._mtus = link_mtus(self.node_netns)
        for ls in self.links:  # nothing shapes a link (no tc here) whose bridge port is absent
            for dev in (ls.client.host_if, ls.server.host_if):
                if dev not in self._mtus:
                    raise NetemError(f"link {ls.client.netns}: no interface {dev} in the node "
                                     f"namespace {self.node_netns}")
        for ls in self.links:
            name, mtu = ls.client.netns, self._mtus[ls.client.host_if]
            # the delay line shapes the rate too (.shaper): GSO packets stay whole both ways
            classes.append(ClassConfig(ls.up_queue, f"{name}/up", queue_max_len(profiles, "up"),
                                       class_spec(ls.profile, "up", mtu)))
            classes.append(ClassConfig(ls.down_queue, f"{name}/down",
                                       queue_max_len(profiles, "down"),
                                       class_spec(ls.profile, "down", mtu)))
        self.delayline = DelayLineProcess(self.node_netns, classes, self.workdir,
                                          heartbeat_s=self.heartbeat_s,
                                          stale_after_s=max(2.0, 10 * self.heartbeat_s))
        self.delayline.start()
        ALLOCATOR.bridge_acquire(self.node_netns)
        self._bridge_on = True
        rules.install(self.node_netns, self.slot.chain, [
            r for ls in self.links for r in (
                rules.QueueRule(ls.up_queue, ls.client.host_if, ls.server.host_if, "up"),
                rules.QueueRule(ls.down_queue, ls.server.host_if, ls.client.host_if, "down"))])
        self._rules_on = True  # install() removes what it made when it fails part way

    def _shape(self, ls: LinkState) -> None:
        """Make the qdiscs of one link match its profile (rate; netem too on the kernel path)."""
        for direction, hop in (("up", ls.up_hop()), ("down", ls.down_hop(self.node_netns))):
            if self.mechanism == "netem":
                cmds = tc.render_netem(ls.profile, direction, hop)
                if cmds and ls.profile.direction(direction).rate_mbit is None:
                    tc.run(tc.render_drop_rate(hop), check=False)
            else:  # the delay line shapes the rate itself; "none" has nothing to install
                cmds = []
            if cmds:
                tc.run_all(cmds)
            elif self.mechanism != "none":
                tc.clear(hop)

    # -- run time ------------------------------------------------------------------------
    def profiles(self) -> dict[str, str]:
        return {ls.client.netns: ls.profile.name for ls in self.links}

    def change(self, new: Profile | NetPlan | Step) -> None:
        """Switch profiles now (a Profile for all clients, a NetPlan, or a schedule Step)."""
        with self._lock:
            if self._stopped:
                raise NetemError("change after stop")
            current = {ls.client.netns: ls.profile for ls in self.links}
            if isinstance(new, Step):
                target = self.plan.resolve_step(new, current)
            else:
                target = NetPlan.of(new).resolve(current)
            needs = any(not p.is_null for p in target.values())
            if self.mechanism == "none" and needs:
                self.mechanism = "netem" if netem_available() else "delayline"
                self.why = "chosen at a change away from null profiles"
            if self.mechanism == "delayline" and self.delayline is not None:
                try:
                    self.delayline.reconfigure({
                        q: class_spec(target[ls.client.netns], d, self._mtus[ls.client.host_if])
                        for ls in self.links
                        for q, d in ((ls.up_queue, "up"), (ls.down_queue, "down"))})
                except DelayLineError as e:
                    raise NetemFailure(f"netem: profile change failed: {e}") from e
            for ls in self.links:
                ls.profile = target[ls.client.netns]
            if self.mechanism == "delayline" and self.delayline is None:
                self._start_delayline()
            for ls in self.links:
                self._shape(ls)
            self.changes.append({"t": time.time(), "profiles": self.profiles()})

    def start_schedule(self, on_error: Callable[[BaseException], None] | None = None) -> None:
        """Run the plan's schedule from now on (a thread; stopped by :meth:`stop`)."""
        if not self.plan.schedule:
            return
        t0 = time.monotonic()

        def run() -> None:
            for step in self.plan.schedule:
                if self._stop_event.wait(max(0.0, t0 + step.at_s - time.monotonic())):
                    return
                try:
                    self.change(step)
                except BaseException as e:  # reported, not swallowed
                    if on_error is not None:
                        on_error(e)
                    return

        t = threading.Thread(target=run, name="ztfl-netem-schedule", daemon=True)
        t.start()
        self._threads.append(t)

    def status(self, check_rules: bool = True) -> NetemStatus:
        """Liveness and counters now (the delay line's heartbeat and kernel queue drops);
        ``check_rules`` also verifies the NFQUEUE rules are still in place (one iptables
        call)."""
        if self.delayline is None:
            return NetemStatus(self.mechanism, not self._stopped or self.mechanism == "none",
                               "", None, None, self.profiles())
        lv = self.delayline.liveness()
        st = lv.status
        kdrops = sum(int(k.get("queue_dropped", 0)) + int(k.get("user_dropped", 0))
                     for k in st.get("kernel", {}).values())
        alive, reason = lv.alive, lv.reason
        if (alive and check_rules and self._rules_on and not self._stopped
                and self.slot is not None
                and not rules.installed(self.node_netns, self.slot.chain)):
            alive, reason = False, "the NFQUEUE rules are gone from the node namespace"
        return NetemStatus(self.mechanism, alive, reason, lv.pid, lv.heartbeat_age_s,
                           self.profiles(), dict(st.get("classes", {})), kdrops,
                           dict(st.get("transport", {})))

    def usage(self) -> dict[str, Any]:
        """What the emulation has done so far: per class (link direction) packets seen,
        passed, held and dropped by the loss model, release lateness (held packets' actual
        minus scheduled release: the emulator's own timing error), kernel queue drops, and the
        delay line's CPU time (user + system) so far, and whether the emulation is in force
        now (rules included). Empty without a delay line."""
        if self.delayline is None:
            return {}
        st = self.status(check_rules=True)
        return {
            "alive": st.alive,
            "reason": st.reason,
            "classes": st.classes,
            "kernel_queue_drops": st.kernel_queue_drops,
            "delayline_cpu_s": cpu_seconds(st.pid),
            "transport": st.transport,
        }

    def check(self, check_rules: bool = True) -> NetemStatus:
        """:meth:`status`, raising :class:`NetemFailure` if the emulation is not in force."""
        s = self.status(check_rules)
        if not s.alive and not self._stopped:
            raise NetemFailure(f"netem: {s.reason}")
        return s

    def watch(self, on_failure: Callable[[NetemFailure], None], interval_s: float = 0.5) -> None:
        """Call ``on_failure`` once (from a thread) when :meth:`check` starts failing."""

        def run() -> None:
            i = 0
            while not self._stop_event.wait(interval_s):
                i += 1
                try:
                    self.check(check_rules=i % 10 == 0)  # the cheap checks every time
                except NetemFailure as e:
                    if not self._stop_event.is_set():
                        on_failure(e)
                    return

        t = threading.Thread(target=run, name="ztfl-netem-watch", daemon=True)
        t.start()
        self._threads.append(t)

    def metadata(self) -> dict[str, Any]:
        """What a run records: mechanism, why, per-client profiles (full data), changes."""
        return {"mechanism": self.mechanism, "why": self.why,
                "node_netns": self.node_netns,
                "links": [{"client": ls.client.netns, "server": ls.server.netns,
                           "up_queue": ls.up_queue, "down_queue": ls.down_queue,
                           "profile": ls.profile.to_dict()} for ls in self.links],
                "changes": list(self.changes),
                "chain": self.chain,
                "delayline_pid": None if self.delayline is None else self.delayline.pid}

    # -- teardown ------------------------------------------------------------------------
    def stop(self) -> NetemStatus:
        """Remove this handle's chain, stop its delay line, clear qdiscs, release the bridge
        sysctl (restored when no other handle needs it) and the queue slot (if the handle
        reserved it). Idempotent; tries every step and raises NetemError at the end listing
        what could not be removed. Other handles' chains and delay lines are left alone."""
        if self._stopped:
            assert self.final_status is not None
            return self.final_status
        self._stop_event.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=10)
        try:
            final = self.status()
        except Exception as e:
            final = NetemStatus(self.mechanism, False, f"status failed: {e}", None, None, {})
        self._stopped = True
        problems: list[str] = []
        queues_free = True  # false while a delay line that could not be stopped may hold them
        if self._rules_on and self.slot is not None:
            problems += rules.remove(self.node_netns, self.slot.chain)
        if self.delayline is not None:
            try:
                st = self.delayline.stop()
                final = NetemStatus(final.mechanism, final.alive, final.reason, final.pid,
                                    final.heartbeat_age_s, final.profiles,
                                    dict(st.get("classes", final.classes)),
                                    final.kernel_queue_drops,
                                    dict(st.get("transport", final.transport)))
            except Exception as e:
                problems.append(f"stopping delay line: {e}")
                queues_free = False
        if self.mechanism != "none":
            for ls in self.links:
                for hop in (ls.up_hop(), ls.down_hop(self.node_netns)):
                    tc.clear(hop)
        if self._bridge_on:
            try:
                problems += ALLOCATOR.bridge_release(self.node_netns)
            except Exception as e:
                problems.append(str(e))
        self._queues_free = queues_free
        if self.slot is not None and self._owns_slot and queues_free:
            ALLOCATOR.release(self.slot)  # rules removed, delay line gone: queues unbound
        if self.workdir is not None and self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.final_status = final
        if problems:
            raise NetemError("netem stop left state behind: " + "; ".join(problems))
        return final

    _owns_workdir = True

    def __enter__(self) -> NetemHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def apply(plan: Profile | NetPlan, node_netns: str,
          links: Sequence[tuple[LinkLike, LinkLike]], *, mechanism: str = "auto",
          slot: QueueSlot | None = None, workdir: Path | None = None,
          heartbeat_s: float = 0.2) -> NetemHandle:
    """Apply ``plan`` to every (client link, server link) pair; return the handle.

    Raises ProfileError for plans naming unknown clients, NetemError when installation fails
    (after removing whatever was installed). ``workdir`` holds the delay line's config, status
    and log (a fresh temporary directory, removed on stop, if not given).

    Link ``i`` uses NFQUEUE ``first + 2i`` (up) and ``first + 2i + 1`` (down) of its queue
    slot, and the slot's chain holds their rules. ``slot`` is one the caller reserved from
    :data:`ALLOCATOR` for ``node_netns`` with at least two queues per link (the caller
    releases it after :meth:`NetemHandle.stop`); without it the handle reserves its own and
    releases it on stop. Either way handles alive at once never share a queue or a chain.
    """
    p = NetPlan.of(plan)
    if not links:
        raise NetemError("apply: no links given")
    clients = [c.netns for c, _ in links]
    if len(set(clients)) != len(clients):
        raise NetemError(f"apply: a client link appears twice: {clients}")
    start = p.resolve(clients)
    mech, why = choose_mechanism(p, mechanism)
    owns_slot = slot is None
    if slot is None:
        slot = ALLOCATOR.reserve(node_netns, 2 * len(links))
    elif slot.node_netns != node_netns or slot.count < 2 * len(links):
        raise NetemError(f"apply: queue slot {slot} does not fit {len(links)} links in "
                         f"{node_netns} (two queues each)")
    elif slot not in ALLOCATOR.live(node_netns):
        raise NetemError(f"apply: queue slot {slot} is not reserved (ALLOCATOR.reserve)")
    owns = workdir is None
    # the node's name in the path (and so in the delay line's command line) lets leak checks
    # find a delay line by the cluster it belongs to
    try:
        wd = (Path(tempfile.mkdtemp(prefix=f"ztfl-netem-{node_netns}-")) if workdir is None
              else workdir)
    except BaseException:
        if owns_slot:
            ALLOCATOR.release(slot)
        raise
    states = [LinkState(c, s, start[c.netns], slot.first + 2 * i, slot.first + 2 * i + 1)
              for i, (c, s) in enumerate(links)]
    h = NetemHandle(p, node_netns, states, mech, why, wd, heartbeat_s, slot, owns_slot)
    h._owns_workdir = owns
    try:
        h._install()
    except BaseException as e:
        try:
            h.stop()
        except NetemError as e2:
            raise NetemError(f"apply failed ({e}); cleanup also failed: {e2}") from e
        if isinstance(e, NetemError | ValueError):
            raise
        raise NetemError(f"apply failed: {e}") from e
    h.changes.append({"t": time.time(), "profiles": h.profiles()})
    return h
