"""The ztfl node agent offline (no Kubernetes here): what a restricted pod's annotations ask of
the node, finding a pod's process by its UID in a /proc tree, the pod's wait on its
downward API file, and the redirect annotation's round trip and refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from k8s_fixtures.netem.init import commands
from k8s_fixtures.netem.profiles import get_profile, load_profiles
from k8s_fixtures.nodeagent import wait
from k8s_fixtures.nodeagent.agent import pod_pid, work
from k8s_fixtures.tls.redirect import ANNOTATION, Redirect
from k8s_fixtures.tls.secret import TLSFiles
from k8s_fixtures.tls.sidecar import SidecarSpec, render_nft_rules

UID = "1f0e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def test_work_is_the_profiles_tc_commands_then_the_redirect() -> None:
    profiles = load_profiles()
    redirect = Redirect(outbound=(50051,))
    steps = work({"ztfl.io/net-profile": "NET2", ANNOTATION: redirect.to_annotation()},
                 profiles)
    net = commands(get_profile("NET2", profiles))
    assert [argv for argv, _ in steps[:-1]] == net and net
    assert steps[-1] == (["nft", "-f", "-"], redirect.rules())
    assert work({"ztfl.io/net-profile": "NET0"}, profiles) == []  # nothing to shape
    assert work({"other": "x"}, profiles) == []
    with pytest.raises(ValueError, match="unknown"):
        work({"ztfl.io/net-profile": "NET9"}, profiles)


@pytest.mark.parametrize("driver", ["cgroupfs", "systemd"])
def test_pod_pid_finds_the_lowest_process_of_the_pod(tmp_path: Path, driver: str) -> None:
    uid = UID if driver == "cgroupfs" else UID.replace("-", "_")
    for pid, path in ((7, "/system.slice/x"), (42, f"/kubepods/besteffort/pod{uid}/a"),
                      (40, f"/kubepods/besteffort/pod{uid}/b"), (3, "/other/pod123")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(f"0::{path}\n")
    (tmp_path / "self").mkdir()
    assert pod_pid(UID, str(tmp_path)) == 40
    assert pod_pid("00000000-0000-0000-0000-000000000000", str(tmp_path)) is None


def _wait(tmp_path: Path, text: str | None,
          timeout: str = "0.3") -> subprocess.CompletedProcess[str]:
    f = tmp_path / "annotations"
    if text is not None:
        f.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "k8s_fixtures.nodeagent.wait", "--annotations", str(f), "--key",
         "ztfl.io/node-agent", "--value", "applied", "--what", "net,redirect",
         "--timeout", timeout, "--interval", "0.05"], capture_output=True, text=True, timeout=30)


def test_the_wait_ends_on_the_mark_and_fails_without_it(tmp_path: Path) -> None:
    done = _wait(tmp_path, 'a="b"\nztfl.io/node-agent="applied"\n')
    assert done.returncode == 0, done.stderr
    late = _wait(tmp_path, 'ztfl.io/net-profile="NET2"\n')
    assert late.returncode == 1
    assert "is the ztfl node agent installed?" in late.stderr and "net,redirect" in late.stderr
    failed = _wait(tmp_path, 'ztfl.io/node-agent="failed: tc: no netem"\n', timeout="30")
    assert failed.returncode == 1 and "failed: tc: no netem" in failed.stderr
    assert wait.parse_annotations('k="a \\"q\\" b"\nbad line\n') == {"k": 'a "q" b'}


def test_the_redirect_annotation_carries_the_sidecars_rules() -> None:
    files = TLSFiles(Path("/t/tls.crt"), Path("/t/tls.key"), Path("/t/ca.crt"))
    for spec in (SidecarSpec(pod="s", files=files, inbound_ports=(50051, 8080)),
                 SidecarSpec(pod="c", files=files, outbound_ports=(50051,))):
        back = Redirect.from_annotation(spec.redirect().to_annotation())
        assert back == spec.redirect() and back.rules() == render_nft_rules(spec)


@pytest.mark.parametrize(("text", "error"), [
    ("nft flush ruleset", "not JSON"),
    ('{"rules": "flush ruleset"}', "expected an object with inbound"),
    ('{"inbound": [[50051]]}', "inbound: expected a list of [app port, proxy port]"),
    ('{"outbound": [70000]}', "outbound: 70000 is not a port number"),
    ('{"proxyUid": 0}', "proxyUid: 0 is not a non-root uid"),
])
def test_a_bad_redirect_annotation_is_one_clear_error(text: str, error: str) -> None:
    with pytest.raises(ValueError) as err:
        Redirect.from_annotation(text)
    assert error in str(err.value)


def test_a_pod_security_refusal_keeps_its_reason() -> None:
    """The API server's 403 for a pod breaking the namespace's level is Pod Security's, not a
    missing RBAC permission: the message keeps the admission's reason (the psa-restricted
    proof looks for it)."""
    from k8s_fixtures.kube.errors import api_error

    body = {"kind": "Status", "message": 'pods "ztfl-probe-privileged" is forbidden: violates '
            'PodSecurity "restricted:latest": runAsNonRoot != true (pod or container "probe" '
            "must set securityContext.runAsNonRoot=true)"}
    msg = api_error(403, body, verb="patch", resource="pods", namespace="ztfl-x",
                    name="ztfl-probe-privileged")
    assert 'violates PodSecurity "restricted:latest"' in msg and "RBAC" not in msg, msg
