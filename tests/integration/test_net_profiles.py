"""Issue 5 end to end on the real local backend (netem-less kernel: the NFQUEUE delay line, which
shapes the rate too): FL rounds at NET2 last at least what the profile makes them last, and a
delay line that dies mid-run fails the run with class ``netem`` instead of being measured
undelayed.

Calibration of NET0-NET4 (``ztfl calibrate``'s table, PASS/FAIL per figure) is
tests/netem/test_netem_calibration.py; jitter statistics, loss accuracy, per-client
heterogeneity, a mid-run profile change and the delay line's death at the handle level are
tests/netem/test_netem_live.py. They are not repeated here.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

import pytest
from integration_support import Live, Row, events_of

from k8s_fixtures import workload
from k8s_fixtures.netem import rules
from k8s_fixtures.netem.profiles import Profile, get_profile
from k8s_fixtures.netem.tc import tbf_burst_bytes
from pytest_ztfl import arm, runner
from pytest_ztfl.matrix import Cell, Workload

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

# The paper CNN (1,199,882 parameters, ~4.8 MB a way) makes the transfer term dominate a round
# at NET2; one local step keeps compute out of the way, so NET0 rounds are short.
PAPER = Workload(clients=2, rounds=3, model="paper", max_steps=1, eval_every=3)
FRAME_PER_PAYLOAD = 1514 / 1460  # Ethernet frame bytes per TCP payload byte, at the least
JITTER_SIGMAS = 5.0


def cell(net: str, workload: Workload = PAPER) -> Cell:
    return Cell(sec="SEC0", net=net, data="iid", seed=0, workload=workload)


def one_way_floor_s(profile: Profile, direction: str, nbytes: int) -> float:
    """The least time ``nbytes`` of TCP payload can take one way on a profile's link: the
    shortest delay the delay line draws in practice plus serialisation at the rate, less a tbf
    bucket's worth (which kernel netem's tbf passes at line rate; the delay line has none, so
    for it this floor is lower than it need be, never higher)."""
    d = profile.direction(direction)
    t = max(0.0, d.delay_ms - JITTER_SIGMAS * d.jitter_std_ms) / 1e3
    if d.rate_mbit is not None:
        wire = nbytes * FRAME_PER_PAYLOAD - tbf_burst_bytes(d.rate_mbit)
        t += max(0.0, wire) * 8 / (d.rate_mbit * 1e6)
    return t


def round_floor_s(profile: Profile, updates: list[dict[str, Any]]) -> float:
    """Lower bound on one FedAvg round's duration under ``profile`` (see the NET2 test)."""
    return max(
        one_way_floor_s(profile, "down", u["bytes_down"])
        + one_way_floor_s(profile, "up", u["bytes_up"])
        for u in updates
    )


def rounds_with_floor(row: Row, events: bytes, profile: Profile) -> list[tuple[int, float, float]]:
    """(round, measured duration, floor) for every round of a run."""
    updates = events_of(events, "client_update")
    out = []
    for r in row["metrics"]["rounds"]:
        mine = [u for u in updates if u["round"] == r["round"]]
        assert len(mine) == r["participants"] > 0, r
        out.append((r["round"], r["duration"], round_floor_s(profile, mine)))
    return out


def test_net2_round_durations_respect_the_profile(live: Live) -> None:
    """Every NET2 round lasts at least the profile's floor; NET0 rounds of the same workload do
    not, so the check can fail (it would, had the profile not reached the pods).

    The floor, per round, is the max over participating clients c of

        floor_c = [d_down - 5 sigma_down] + max(0, S_c * F - B_down) * 8 / R_down
                + [d_up - 5 sigma_up]     + max(0, U_c * F - B_up) * 8 / R_up

    * One round trip: the round clock starts at ``round_start``, before the TRAIN task is put
      on each client's already open Join stream (TCP and TLS handshakes happened at join, so a
      round needs no new connection); the client can start training only once it holds the
      whole task (down), and the round ends only once the server holds every client's whole
      ``Submit`` request (up). So each round contains, per client, one one-way trip down and
      one up, in sequence: RTT x 1. d is the profile's one-way delay per direction (25 ms at
      NET2) less 5 jitter standard deviations (2 ms), the least the delay line draws in
      practice (it is FIFO: a packet never leaves before its own sample).
    * Bytes / rate: S_c = ``bytes_down`` and U_c = ``bytes_up`` of the client's
      ``client_update`` event (the protobuf sizes; gRPC, HTTP/2, TLS and TCP add to them,
      never remove). Each client link has its own rate in each direction (the delay line's
      class per link direction; with kernel netem a tbf per hop), so clients do not share it:
      R_down = 50 Mbit/s and R_up = 20 Mbit/s per client at NET2, counted on Ethernet frames.
      F = 1514 / 1460 frame bytes per payload byte (a full frame with no TCP options; with
      timestamps it is 1514 / 1448, so this is the smaller factor). B is the tbf bucket
      (``tc.tbf_burst_bytes``: 2 ms of the rate, >= 4 frames), which kernel netem's tbf may pass
      at line rate (the delay line serialises every byte; subtracting B only lowers the floor).
    * Compute (training, (de)serialisation, FedAvg) only adds.

    For the paper CNN this is ~0.80 s down + ~2.0 s up + 0.03 s of delay ~= 2.8 s.
    """
    profile = get_profile("NET2")
    slow_row, slow_events = live.run(cell("NET2"))
    fast_row, fast_events = live.run(cell("NET0"))
    for row in (slow_row, fast_row):
        assert row["success"], row["success_reason"]
    assert slow_row["overlays"]["net"]["mechanism"] in ("delayline", "netem")
    assert fast_row["overlays"]["net"]["mechanism"] == "none"
    slow = rounds_with_floor(slow_row, slow_events, profile)
    fast = rounds_with_floor(fast_row, fast_events, profile)
    print("\nround  NET2 s  NET0 s  NET2 floor s")
    for (r, d2, floor), (_, d0, _) in zip(slow, fast, strict=True):
        print(f"{r:5d}  {d2:6.3f}  {d0:6.3f}  {floor:6.3f}")
    assert all(floor > 2.5 for _, _, floor in slow), slow  # the bytes term dominates
    below = [(r, d, f) for r, d, f in slow if d < f]
    assert not below, f"NET2 rounds shorter than the profile allows: {below}"
    # the floor is NET2's, not the workload's: NET0 rounds of the same work go under it (one
    # suffices to show that; a CPU-starved NET0 round may not)
    assert any(d < f for _, d, f in fast), f"NET0 rounds should be under the floor: {fast}"

    # The delay line's own account of the NET2 run: both directions held packets, released
    # them on time (lateness well under the profile's jitter), and its CPU per round is known.
    emu = slow_row["overlays"]["net"]["emulation"]
    classes = list(emu["rounds"].values())  # from the rounds' release to the run's end
    print(f"delay line: {emu['delayline_cpu_s_per_round'] * 1e3:.1f} ms CPU per round; "
          + "; ".join(f"{c['label']}: held {c['held_total']}, late mean "
                      f"{c['late_mean_us']:.0f} us" for c in classes))
    assert len(classes) == 2 * live_clients(slow_row) and all(c["held_total"] for c in classes)
    assert all(c["late_mean_us"] < 2000 for c in classes), classes
    assert emu["kernel_queue_drops"] == 0
    assert emu["delayline_cpu_s_rounds"] > 0 and emu["delayline_cpu_s_per_round"] > 0
    assert "emulation" not in fast_row["overlays"]["net"]  # NET0: no delay line to account


def live_clients(row: Row) -> int:
    return int(row["cell"]["workload"]["clients"])


DEATH = Workload(clients=1, rounds=3, model="paper", max_steps=1, eval_every=3)


class RoundTwoKiller(threading.Thread):
    """Follows the server's log; when round 2 starts, SIGKILLs the namespace's delay line (its
    PID from the NET handle's status)."""

    def __init__(self, live: Live, ns: str) -> None:
        super().__init__(daemon=True, name="ztfl-test-killer")
        self.live, self.ns = live, ns
        self.killed_pid: int | None = None
        self.round2 = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for line in self.live.cluster.logs(
                self.ns, workload.SERVER, container=workload.SERVER, follow=True
            ):
                if not line.startswith("{"):
                    continue
                e = json.loads(line)
                if e["event"] == "round_start" and e["round"] == 2:
                    self.round2 = True
                    assert self.live.backend.netem is not None
                    handle = self.live.backend.netem.handle(self.ns)
                    assert handle is not None
                    pid = handle.status().pid
                    assert pid is not None, "no delay line process"
                    os.kill(pid, signal.SIGKILL)
                    self.killed_pid = pid
                    return
                if e["event"] == "run_end":
                    return
        except BaseException as exc:  # reported by the test
            self.error = exc


def netem_run_killed_in_round_2(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> tuple[Row, bytes]:
    c = cell("NET2", DEATH)
    key = f"killed-in-round-2 {c.id}"
    if key not in live.memo:
        killers: list[RoundTwoKiller] = []
        real = arm.prove  # what an Arm calls once its objects are applied

        def prove(*args: Any, **kwargs: Any) -> Any:
            proofs = real(*args, **kwargs)  # pods and the NET overlay are up from here on
            k = RoundTwoKiller(live, runner.namespace_for(c))
            k.start()
            killers.append(k)
            return proofs

        monkeypatch.setattr(arm, "prove", prove)
        try:
            row, events = runner.run_cell(live.backend, c, print)
        finally:
            for k in killers:
                k.join(timeout=30)
        assert len(killers) == 1 and not killers[0].is_alive()
        k = killers[0]
        assert k.error is None, f"killer thread: {k.error!r}"
        assert k.round2 and k.killed_pid is not None, "round 2 never started"
        row["test_killed_pid"] = k.killed_pid
        live.memo[key] = (row, events)
    killed: tuple[Row, bytes] = live.memo[key]
    return killed


def test_delay_line_dying_mid_run_fails_the_run(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL the delay line while round 2 is in flight: the watcher of the NET handle sees
    it, the run is marked failed with an error starting ``netem:`` (not measured as NET2 with
    the delay silently gone, which ``--queue-bypass`` would otherwise allow), and the overlay
    is still removed cleanly with the namespace."""
    row, events = netem_run_killed_in_round_2(live, monkeypatch)
    pid = row["test_killed_pid"]
    assert row["success"] is False
    assert row["error"].startswith("netem:"), row["error"]
    assert f"delay line process {pid} exited" in row["error"]
    assert row["overlays"]["net"]["mechanism"] == "delayline"
    assert row["overlays"]["net"]["delayline_pid"] == pid
    ns = runner.namespace_for(cell("NET2", DEATH))
    assert live.backend.netem is not None and live.backend.netem.handle(ns) is None
    assert rules.chains(live.cluster.node_netns) == []  # no netem chain of any handle left
    # round 1 ran before the kill, through the live delay line: at least the NET2 floor
    first = rounds_with_floor(row, events, get_profile("NET2"))[0]
    assert first[0] == 1 and first[1] >= first[2], first


def test_delay_line_dying_mid_run_is_classified_netem(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    row, _ = netem_run_killed_in_round_2(live, monkeypatch)
    if not str(row["error"]).startswith("netem:"):
        pytest.fail(f"the run did not fail with netem: {row['error']}")
    assert row["failures_by_class"].get("netem", 0) >= 1, row["failures_by_class"]
    assert row["extra_info"]["failures_by_class"].get("netem", 0) >= 1
