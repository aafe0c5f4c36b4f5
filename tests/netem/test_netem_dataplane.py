"""The delay line's C data plane (k8s_fixtures.netem.dataplane, cloop) on a live topology:
chosen by default, the same per-packet draws as the Python loop for a seed, reordering
classes, a clear failure or fallback without a compiler."""

from __future__ import annotations

import ctypes
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netem_support import Topo, wait_until

from k8s_fixtures.netem import apply
from k8s_fixtures.netem.calibrate import run_probe
from k8s_fixtures.netem.dataplane import Counters, library_path, load
from k8s_fixtures.netem.profiles import parse_profile
from k8s_fixtures.netem.queues import ALLOCATOR
from k8s_fixtures.netem.rules import chains
from k8s_fixtures.netem.shaper import frame_bytes, ip_lengths
from k8s_fixtures.netem.state import NetemError

pytestmark = pytest.mark.privileged

LOSSY_SPEC = {"up": {"delay_ms": 4, "jitter_ms": 1, "loss_pct": 20},
              "down": {"delay_ms": 3, "loss_pct": 10}}
LOSSY = parse_profile("LOSSY", {**LOSSY_SPEC, "seed": 7})


def _raw_status(h: Any) -> dict[str, Any]:
    st: dict[str, Any] = json.loads(h.delayline.status_path.read_text())
    return st


def _lost(topo: Topo, prof: Any, client: int) -> tuple[list[int], list[int], dict[str, Any]]:
    """Probe sequence numbers lost up and down for 600 UDP probes, and the transport (with
    the queue numbers: they seed the draws)."""
    c = topo.clients[client]
    with apply(prof, topo.node.netns, [(c, topo.server)], mechanism="delayline") as h:
        r = run_probe(c.netns, "udp", "--host", topo.server.ip, "--n", "600",
                      "--interval-ms", "1", "--drain-s", "1")
        raw = _raw_status(h)
        transport = {**raw["transport"], "kernel": raw["kernel"],
                     "queues": (h.links[0].up_queue, h.links[0].down_queue)}
    probes = r["probes"]
    up = [p["seq"] for p in probes if p["srv"] is None]
    down = [p["seq"] for p in probes if p["srv"] is not None and p["back"] is None]
    return up, down, transport


def test_c_and_python_loops_drop_the_same_packets_for_a_seed(
        topo: Topo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The draws come from the same seeded models in the same order on both loops, so the
    same seed loses the same probes, and the default loop here is the C one. Each run has its
    own client link (the same queue numbers): a TCP retransmission of one run's status query,
    which the loss provoked, must not cross the next run's classes and take a draw."""
    monkeypatch.delenv("ZTFL_DELAYLINE_DATAPLANE", raising=False)
    up_c, down_c, tr_c = _lost(topo, LOSSY, 0)
    monkeypatch.setenv("ZTFL_DELAYLINE_DATAPLANE", "python")
    up_py, down_py, tr_py = _lost(topo, LOSSY, 1)
    assert tr_c["queues"] == tr_py["queues"]
    assert tr_c["dataplane"] == "c" and tr_c["underruns"] == 0 and tr_c["verdict_errors"] == 0
    assert tr_py["dataplane"] == "python" and tr_py["dataplane_note"] == ""
    print(f"\nlost up {len(up_c)}, down {len(down_c)} of 600 (C); "
          f"{len(up_py)}, {len(down_py)} (Python)")
    assert 60 <= len(up_c) <= 180 and 20 <= len(down_c) <= 110  # 20% and 10% of 600/480
    assert up_c == up_py and down_c == down_py
    reseeded = parse_profile("LOSSY", {**LOSSY_SPEC, "seed": 8})
    monkeypatch.delenv("ZTFL_DELAYLINE_DATAPLANE")
    up_8, _, _ = _lost(topo, reseeded, 0)
    assert up_8 != up_c  # the seed matters: the equality above is not a coincidence


def test_a_reordering_class_releases_every_packet(topo: Topo) -> None:
    """reorder: true holds packets in due order (the C heap), not arrival order: with jitter
    as large as the spacing, some probes overtake others, and every packet is released."""
    c = topo.clients[0]
    prof = parse_profile("REORDER", {"up": {"delay_ms": 10, "jitter_ms": 5, "reorder": True},
                                     "seed": 3})
    with apply(prof, topo.node.netns, [(c, topo.server)], mechanism="delayline") as h:
        r = run_probe(c.netns, "udp", "--host", topo.server.ip, "--n", "400",
                      "--interval-ms", "0.5", "--drain-s", "1")
        wait_until("every held packet released",
                   lambda: all(int(v["held_now"]) == 0 for v in h.status().classes.values()),
                   timeout=10)
        transport = _raw_status(h)["transport"]
    probes = [p for p in r["probes"] if p["srv"] is not None]
    assert len(probes) == 400 and transport["dataplane"] == "c"
    order = sorted(probes, key=lambda p: p["srv"])
    overtaken = sum(1 for a, b in itertools.pairwise(order) if b["seq"] < a["seq"])
    print(f"\n{overtaken} of 400 probes arrived after a later one")
    assert overtaken >= 20


def test_without_a_compiler_auto_falls_back_and_c_fails_clearly(
        topo: Topo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No build (CC=false, empty cache): "auto" runs the Python loop and says why; "c" makes
    the start fail with the reason, and nothing is left installed."""
    assert library_path().exists()  # the real build works here (and is cached)
    monkeypatch.setenv("ZTFL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "false")
    c = topo.clients[0]
    prof = parse_profile("D", {"up": {"delay_ms": 2}, "down": {"delay_ms": 2}})
    with apply(prof, topo.node.netns, [(c, topo.server)], mechanism="delayline") as h:
        transport = _raw_status(h)["transport"]
        assert topo.rtt_p50(c, n=10) >= 3.5
    assert transport["dataplane"] == "python"
    assert "false failed on dataplane.c" in transport["dataplane_note"]
    monkeypatch.setenv("ZTFL_DELAYLINE_DATAPLANE", "c")
    with pytest.raises(NetemError, match=r"apply failed: .*C data plane required: false failed"):
        apply(prof, topo.node.netns, [(c, topo.server)], mechanism="delayline")
    assert chains(topo.node.netns) == [] and ALLOCATOR.live(topo.node.netns) == []


@settings(max_examples=300, deadline=None)
@given(head=st.binary(min_size=0, max_size=128), length=st.integers(0, 65_535),
       version=st.sampled_from([4, 6, 5]), proto=st.sampled_from([6, 17, 1]),
       mtu=st.integers(576, 9000))
def test_the_c_loop_charges_a_packet_the_frames_the_python_loop_does(
        head: bytes, length: int, version: int, proto: int, mtu: int) -> None:
    """The C data plane's header parsing and frame count are shaper.py's, byte for byte:
    random headers with a chosen version, length and protocol (and random option lengths)."""
    b = bytearray(head.ljust(60, b"\0") if len(head) >= 20 else head)
    if len(b) >= 20:
        b[0] = version << 4 | (b[0] & 0x0F)
        if version == 4:
            b[2:4], b[9] = length.to_bytes(2, "big"), proto
        elif len(b) >= 40:
            b[4:6], b[6] = length.to_bytes(2, "big"), proto
    py = frame_bytes(*ip_lengths(bytes(b)), mtu)
    assert load().dl_frame_bytes(bytes(b), len(b), mtu) == py  # built at first use (cached)


def test_the_c_loop_counts_an_unparsed_rated_packet_and_charges_a_bare_frame() -> None:
    """dataplane.c's admission of a rated packet (on_packet's, through the dl_admit hook): one
    whose IP length cannot be read is counted in ``unparsed`` and charged a bare frame."""
    lib = load()
    h = lib.dl_new(1, 0.001, 0.2)
    try:
        lib.dl_class_init(h, 0, 1, 64, 1)
        lib.dl_class_config(h, 0, 0.0, 0, 0, 0, None, 0, None, 0, 1e6, 100_000, 1500)
        assert lib.dl_admit(h, 0, 10.0, b"\x00" * 40, 40) == pytest.approx(10.0 + 14 / 1e6)
        v4 = bytearray(60)
        v4[0], v4[2:4], v4[9] = 0x45, (1500).to_bytes(2, "big"), 17
        assert lib.dl_admit(h, 0, 10.0, bytes(v4), 60) == pytest.approx(10.0 + 1528 / 1e6)
        assert lib.dl_admit(h, 0, 10.0, b"", 0) == pytest.approx(10.0 + 1542 / 1e6)
        counters, transport = (Counters * 1)(), (ctypes.c_uint64 * 3)()
        lib.dl_snapshot(h, counters, transport)
        assert counters[0].unparsed == 2  # the non-IP bytes and the empty payload
    finally:
        lib.dl_close(h)
