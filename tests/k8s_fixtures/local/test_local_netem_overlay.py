"""The local NET overlay shapes every annotated client pod's link, also one added later."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from k8s_fixtures.local.backend import LocalCluster
from k8s_fixtures.netem.local_overlay import ANNOTATION, NetemOverlay
from k8s_fixtures.netem.profiles import parse_profile

pytestmark = pytest.mark.privileged
# 10 ms each way without jitter: a shaped connect takes >= 20 ms (the delay line is late, never
# early), an unshaped one ~0.1 ms
FIXED = parse_profile("FIXED", {"up": {"delay_ms": 10}, "down": {"delay_ms": 10}})

# Connects to a closed port of the server: SYN out, RST back, both through the link's emulation.
RTT = ("import json,socket,sys,time\nout=[]\nfor _ in range(5):\n"
       " s=socket.socket(); t=time.monotonic()\n try: s.connect((sys.argv[1],9))\n"
       " except OSError: pass\n out.append((time.monotonic()-t)*1e3); s.close()\n"
       "print(json.dumps(sorted(out)[2]))")


def _pod(name: str, labels: dict[str, str], profile: str | None = None) -> dict[str, object]:
    meta: dict[str, object] = {"name": name, "namespace": "run", "labels": labels}
    if profile:
        meta["annotations"] = {ANNOTATION: profile}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "command": ["sleep", "600"]}]}}


def _rtt_ms(c: LocalCluster, pod: str, server_ip: str) -> float:
    r = c.exec("run", pod, [sys.executable, "-c", RTT, server_ip])
    assert r.rc == 0, r.err
    return float(json.loads(r.out))


def test_a_client_added_to_a_shaped_namespace_is_shaped_too(state_root: Path) -> None:
    with LocalCluster(prefix="ztlc", state_root=state_root) as c:
        overlay = NetemOverlay({"FIXED": FIXED})
        c.add_overlay(overlay)
        server = {"app.kubernetes.io/component": "fl-server"}
        c.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "run"}},
                 _pod("srv", server), _pod("c0", {"app": "c"}, "FIXED")])
        c.wait_ready("run", timeout=20)
        ip = next(p.ip for p in c.pods("run") if p.name == "srv")
        assert _rtt_ms(c, "c0", ip) >= 19.5
        first = overlay.handle("run")
        c.apply(_pod("c1", {"app": "c"}, "FIXED"))
        c.wait_ready("run", timeout=20)
        assert overlay.handle("run") is not first  # rebuilt for the new set of clients
        assert _rtt_ms(c, "c1", ip) >= 19.5
        assert _rtt_ms(c, "c0", ip) >= 19.5
        c.apply(_pod("other", {"app": "x"}))  # not annotated: the emulation is left as it is
        c.wait_ready("run", timeout=20)
        kept = overlay.handle("run")
        assert _rtt_ms(c, "other", ip) < 10.0
        assert overlay.handle("run") is kept
