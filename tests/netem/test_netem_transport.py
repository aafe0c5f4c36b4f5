"""The delay line's transport on a live topology: GSO packets queued whole, batch verdicts
that release every held packet, the kernel's receive stamps read (k8s_fixtures.netem.nfq)."""

from __future__ import annotations

import json

import pytest
from netem_support import Topo, wait_until

from k8s_fixtures.netem import apply, tc
from k8s_fixtures.netem.calibrate import run_probe
from k8s_fixtures.netem.profiles import parse_profile

pytestmark = pytest.mark.privileged

MSS = 1448


def test_bulk_up_is_queued_as_gso_packets_and_all_released(topo: Topo) -> None:
    """A delay-only link (no tbf before the delay line): TCP's GSO packets reach the queue
    whole, so the up class sees far fewer packets than MSS-sized segments went through; every
    held packet is released by the batch verdicts (none left, none dropped by the kernel)."""
    c = topo.clients[0]
    prof = parse_profile("HOLD5", {"up": {"delay_ms": 5}, "down": {"delay_ms": 5}})
    with apply(prof, topo.node.netns, [(c, topo.server)], mechanism="delayline") as h:
        r = run_probe(c.netns, "bulk", "--host", topo.server.ip, "--direction", "up",
                      "--seconds", "2")
        got = int(r["timeline"][-1][1])
        st = h.status()
        up = next(v for v in st.classes.values() if str(v["label"]).endswith("/up"))
        raw = json.loads(h.delayline.status_path.read_text())  # type: ignore[union-attr]
        assert got > 10 * 2**20, f"only {got} bytes moved"
        segments = got / MSS
        assert up["seen"] < segments / 2, (up["seen"], segments)
        assert st.kernel_queue_drops == 0
        assert raw["transport"]["verdict_errors"] == 0
        # nearly every packet carried a receive stamp (a few TCP packets keep their sender's
        # departure time instead, which is not the arrival: those count from their read)
        assert up["stamped"] >= 0.9 * up["seen"], (up["stamped"], up["seen"])
        # a probe after the transfer still crosses: nothing is stuck behind a lost verdict
        assert topo.rtt_p50(c, n=10) >= 9.0
        wait_until("every held packet released",  # the status is rewritten every 0.2 s
                   lambda: all(int(v["held_now"]) == 0 for v in h.status().classes.values()),
                   timeout=10)


@pytest.mark.parametrize("dataplane", ["c", "python"])
def test_a_rated_link_is_shaped_by_the_delay_line_on_whole_gso_packets(
        topo: Topo, dataplane: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rate is the delay line's (k8s_fixtures.netem.shaper), not a tbf's: no qdisc on either
    hop, GSO packets queued whole in both directions (far fewer than MSS segments), and no
    more bytes through than the rate allows (an upper bound: a loaded machine only slows a
    flow; the rate's accuracy is calibrated in test_netem_calibration.py)."""
    monkeypatch.setenv("ZTFL_DELAYLINE_DATAPLANE", dataplane)
    c = topo.clients[0]
    prof = parse_profile("RATED", {"up": {"delay_ms": 5, "rate_mbit": 40},
                                   "down": {"delay_ms": 5, "rate_mbit": 80}})
    with apply(prof, topo.node.netns, [(c, topo.server)], mechanism="delayline") as h:
        ls = h.links[0]
        for hop in (ls.up_hop(), ls.down_hop(topo.node.netns)):
            q = tc.run(["tc", "-n", hop.netns, "qdisc", "show", "dev", hop.dev])
            assert "tbf" not in q, q
        moved = {}
        for direction, rate in (("up", 40), ("down", 80)):
            r = run_probe(c.netns, "bulk", "--host", topo.server.ip, "--direction", direction,
                          "--seconds", "2")
            t0, b0 = r["timeline"][0]
            t1, b1 = r["timeline"][-1]
            moved[direction] = b1
            # payload bytes are 1448 of each 1514-byte frame the rate counts
            assert (b1 - b0) * 1514 / 1448 * 8 / 1e6 <= 1.1 * rate * (t1 - t0), (direction, r)
        st = h.status()
        raw = json.loads(h.delayline.status_path.read_text())  # type: ignore[union-attr]
        assert raw["transport"]["dataplane"] == dataplane
        for direction in ("up", "down"):
            cls = next(v for v in st.classes.values() if str(v["label"]).endswith(direction))
            assert moved[direction] > 2**20, moved
            # data packets of both flows plus the ACKs of the other: MSS segments alone
            # would be more than the data
            segments = (moved["up"] + moved["down"]) / MSS
            assert cls["seen"] < segments / 2, (direction, cls["seen"], segments)
            assert cls["unparsed"] == 0, cls  # every packet's frames were counted
        assert st.kernel_queue_drops == 0


@pytest.mark.parametrize("fixed", [None, "2000"])
@pytest.mark.parametrize("dataplane", ["c", "python"])
def test_a_dense_flow_wakes_the_delay_line_once_per_window_and_keeps_its_timing(
        topo: Topo, dataplane: str, fixed: str | None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bulk flow on a delay-only link keeps packets due all the time: the loop passes at
    most once per batch window (not once per half window), and every release is within half
    a window of its due time, early or late (scheduling latency aside: the mean holds it).
    The window is 1 ms unless ``ZTFL_DELAYLINE_WINDOW_US`` fixes another."""
    monkeypatch.setenv("ZTFL_DELAYLINE_DATAPLANE", dataplane)
    if fixed is not None:
        monkeypatch.setenv("ZTFL_DELAYLINE_WINDOW_US", fixed)
    c = topo.clients[0]
    prof = parse_profile("DENSE", {"up": {"delay_ms": 5}, "down": {"delay_ms": 5}})
    with apply(prof, topo.node.netns, [(c, topo.server)], mechanism="delayline") as h:
        path = h.delayline.status_path  # type: ignore[union-attr]
        before = json.loads(path.read_text())["transport"]
        window_us = float(before["batch_us"])
        assert window_us == pytest.approx(float(fixed or 1000))
        seconds = 2.0
        r = run_probe(c.netns, "bulk", "--host", topo.server.ip, "--direction", "up",
                      "--seconds", f"{seconds}")
        after = json.loads(path.read_text())["transport"]
        assert int(r["timeline"][-1][1]) > 10 * 2**20  # a dense flow: packets always due
        passes = int(after["wakeups"]) - int(before["wakeups"])
        # one per window of the transfer, and 100 for the probe's start and end and the
        # heartbeats (a status is up to 0.2 s old); a pass per half window when packets
        # fall due in between (the loop before) made ~1.1-1.3 per window here
        assert passes <= seconds / (window_us / 1e6) + 100, (passes, window_us)
        for cls in h.status().classes.values():
            assert float(cls["early_max_us"]) >= -window_us / 2 - 1, cls
            assert abs(float(cls["late_mean_us"])) <= window_us / 2, cls
