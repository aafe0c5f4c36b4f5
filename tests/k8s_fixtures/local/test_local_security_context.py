"""The local backend honours ``securityContext``, the token volume and Pod Security labels.

A container (and an exec into it) runs as its ``runAsUser``/``runAsGroup``, with every
capability dropped, no_new_privs, the RuntimeDefault seccomp filter and a read-only root
filesystem (writable volumes stay writable); without a context it keeps root, its capabilities
and a ServiceAccount token. A namespace labelled ``restricted`` refuses a pod breaking that
level, before anything is created. The node agent overlay installs a pod's sidecar redirect
from its annotation. Checked from inside the containers (their /proc/self/status and what
their system calls return), never from the objects.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ztlc_support import PY, netns_named

from k8s_fixtures import hardening, psa
from k8s_fixtures.cluster import ManifestError, Obj
from k8s_fixtures.local.backend import LocalCluster
from k8s_fixtures.local.nodeagent import NodeAgentOverlay
from k8s_fixtures.tls.redirect import ANNOTATION, NFT_TABLE, Redirect

pytestmark = pytest.mark.privileged
_counter = itertools.count()
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount"

# What the process may do, as one JSON line: its ids and capability sets, no_new_privs and
# seccomp mode; creating a file in / and in the writable volume; a new user namespace (the
# RuntimeDefault filter refuses it; root may); the token volume.
CHECK = (
    "import ctypes, errno, json, os\n"
    "st = {}\n"
    "for line in open('/proc/self/status'):\n"
    "    k, _, v = line.partition(':')\n"
    "    if k in ('Uid', 'Gid', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb',\n"
    "             'NoNewPrivs', 'Seccomp'):\n"
    "        st[k] = v.split()\n"
    "def attempt(f):\n"
    "    try:\n"
    "        f()\n"
    "        return 'ok'\n"
    "    except OSError as e:\n"
    "        return errno.errorcode[e.errno]\n"
    "st['root'] = attempt(lambda: os.close(os.open('/', os.O_TMPFILE | os.O_WRONLY, 0o600)))\n"
    "st['work'] = attempt(lambda: open('/var/lib/ztlc-work/w%d' % os.getpid(), 'w').close())\n"
    "import tempfile\n"
    "st['tmp'] = attempt(lambda: tempfile.TemporaryFile().close())\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "rc = libc.unshare(0x10000000)\n"
    "st['userns'] = 'ok' if rc == 0 else errno.errorcode[ctypes.get_errno()]\n"
    f"st['token'] = sorted(os.listdir({TOKEN!r})) if os.path.isdir({TOKEN!r}) else None\n"
    f"st['sub'] = open({TOKEN!r} + '/token').read() if st['token'] else None\n"
    "print(json.dumps(st), flush=True)\n"
)
SLEEP = "import time\ntime.sleep(3600)\n"
WORK = {"name": "work", "mountPath": "/var/lib/ztlc-work"}


def pod(ns: str, name: str, *, restricted: bool, **extra: Any) -> Obj:
    spec: dict[str, Any] = {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
        "volumes": [{"name": "work", "emptyDir": {}}],
        "containers": [{"name": "c", "image": "ignored", "command": [PY, "-c", CHECK + SLEEP],
                        "volumeMounts": [WORK]}],
    }
    if restricted:
        hardening.harden_pod(spec)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, **extra}, "spec": spec}


def namespace(name: str, level: str | None) -> Obj:
    labels = {psa.ENFORCE: level} if level else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


@pytest.fixture
def ns(cluster: LocalCluster) -> Iterator[str]:
    name = f"sc{next(_counter)}"
    cluster.apply(namespace(name, "restricted"))
    yield name
    cluster.delete(namespace=name)
    assert not [p for p in netns_named(cluster.name) if f"-{name}." in p]


def reported(cluster: LocalCluster, ns: str, name: str, timeout: float = 20) -> dict[str, Any]:
    """The container's own JSON line (from its log)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in cluster.logs(ns, name) if ln.startswith("{")]
        if lines:
            parsed: dict[str, Any] = json.loads(lines[-1])
            return parsed
        assert time.monotonic() < deadline, (cluster.pod_status(ns, name), list(
            cluster.logs(ns, name)))
        time.sleep(0.05)


def exec_check(cluster: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    r = cluster.exec(ns, name, [PY, "-c", CHECK], container="c")
    assert r.rc == 0, r
    parsed: dict[str, Any] = json.loads(r.out.strip().splitlines()[-1])
    return parsed


def test_a_restricted_container_and_its_exec_are_confined(cluster: LocalCluster,
                                                          ns: str) -> None:
    cluster.apply(pod(ns, "p", restricted=True))
    cluster.wait_ready(ns, names=["p"], timeout=20)
    for st in (reported(cluster, ns, "p"), exec_check(cluster, ns, "p")):
        uid = str(psa.NON_ROOT_UID)
        assert st["Uid"] == [uid] * 4 and st["Gid"] == [uid] * 4, st
        for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[caps][0], 16) == 0, (caps, st)
        assert st["NoNewPrivs"] == ["1"] and st["Seccomp"] == ["2"], st
        assert st["root"] == "EROFS", st  # read-only root, whatever the user may write
        assert st["work"] == "ok" and st["tmp"] == "ok", st  # writable volumes, TMPDIR
        assert st["userns"] == "EPERM", st  # refused by the filter
        assert st["token"] is None, st  # automountServiceAccountToken: false


def test_without_a_context_a_container_keeps_root_and_gets_a_token(cluster: LocalCluster) -> None:
    name = f"sc{next(_counter)}"
    cluster.apply(namespace(name, None))
    try:
        cluster.apply(pod(name, "p", restricted=False))
        st = reported(cluster, name, "p")
        assert st["Uid"] == ["0"] * 4 and int(st["CapEff"][0], 16) != 0, st
        assert st["NoNewPrivs"] == ["0"] and st["Seccomp"] == ["0"], st
        assert st["root"] == "ok" and st["userns"] == "ok", st
        assert st["token"] == ["namespace", "token"], st
        claims = st["sub"].split(".")[1]
        sub = json.loads(base64.urlsafe_b64decode(claims + "=="))["sub"]
        assert sub == f"system:serviceaccount:{name}:default", sub
    finally:
        cluster.delete(namespace=name)


def test_a_restricted_namespace_refuses_a_pod_that_breaks_the_level(
        cluster: LocalCluster, ns: str) -> None:
    with pytest.raises(ManifestError) as err:
        cluster.apply(pod(ns, "root", restricted=False))
    msg = str(err.value)
    assert msg.startswith(f'Pod {ns}/root: spec: violates PodSecurity "restricted:latest": '), msg
    for rule in ("allowPrivilegeEscalation != false", "unrestricted capabilities",
                 "runAsNonRoot != true", "seccompProfile"):
        assert rule in msg, msg
    assert cluster.pods(ns) == []


def test_run_as_non_root_without_a_user_does_not_start(cluster: LocalCluster) -> None:
    name = f"sc{next(_counter)}"
    cluster.apply(namespace(name, None))
    try:
        p = pod(name, "p", restricted=False)
        p["spec"]["securityContext"] = {"runAsNonRoot": True}
        cluster.apply(p)
        status = cluster.wait_finished(name, "p", timeout=20)
        c = status.containers[0]
        assert c.reason == "StartError" and "runAsNonRoot" in (c.message or ""), c
    finally:
        cluster.delete(namespace=name)


def test_a_bad_security_context_is_one_line_naming_the_field(cluster: LocalCluster,
                                                             ns: str) -> None:
    p = pod(ns, "p", restricted=True)
    p["spec"]["securityContext"]["runAsUser"] = "abc"
    with pytest.raises(ManifestError, match=(
            rf"^Pod {ns}/p: spec.securityContext.runAsUser: 'abc' is not a user/group id")):
        cluster.apply(p)


def test_the_node_agent_installs_a_pods_redirect_before_it_starts(
        cluster: LocalCluster, ns: str) -> None:
    cluster.add_overlay(NodeAgentOverlay())
    redirect = Redirect(outbound=(50051,))
    cluster.apply(pod(ns, "p", restricted=True,
                      annotations={ANNOTATION: redirect.to_annotation()}))
    netns = cluster.pod_info(ns, "p").netns
    table = cluster.run(["ip", "netns", "exec", netns, "nft", "list", "table", "inet", NFT_TABLE])
    assert "meta skuid 2102 return" in table and "redirect to :4140" in table, table
    with pytest.raises(ManifestError, match=(
            rf"^Pod {ns}/q: metadata.annotations\[{ANNOTATION}\]: outbound: 0 is not a port")):
        cluster.apply(pod(ns, "q", restricted=True,
                          annotations={ANNOTATION: '{"outbound": [0]}'}))
    assert [p.name for p in cluster.pods(ns)] == ["p"]  # the refused pod left nothing


def test_a_command_below_a_directory_its_user_cannot_search_runs_and_shows_nothing_else(
        cluster: LocalCluster, ns: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The local backend runs commands from this machine's files: a restricted pod whose
    interpreter sits below directories its uid may not search (here 0700) still runs it (as an
    image would ship it), and sees nothing else of those directories."""
    hidden = tmp_path_factory.mktemp("private")
    hidden.chmod(0o700)
    (hidden / "python3").symlink_to(PY)
    (hidden / "secret").write_text("not for the pod")
    p = pod(ns, "p", restricted=True)
    p["spec"]["containers"][0]["command"][0] = str(hidden / "python3")
    cluster.apply(p)
    cluster.wait_ready(ns, names=["p"], timeout=20)
    assert reported(cluster, ns, "p")["Uid"] == [str(psa.NON_ROOT_UID)] * 4
    r = cluster.exec(ns, "p", [str(hidden / "python3"), "-c",
                               f"import os; print(sorted(os.listdir({str(hidden)!r})))"],
                     container="c")
    assert (r.rc, r.out.strip()) == (0, "['python3']"), r


def test_a_command_its_user_may_not_execute_is_refused(cluster: LocalCluster, ns: str,
                                                        tmp_path: Path) -> None:
    script = tmp_path / "run"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o700)
    p = pod(ns, "p", restricted=True)
    p["spec"]["containers"][0]["command"] = [str(script)]
    with pytest.raises(ManifestError, match=(
            rf"^Pod {ns}/p: spec.containers\[0\].command: '{script}' cannot be run by uid 10001 "
            rf"\(runAsUser\): {script} is not executable by it$")):
        cluster.apply(p)
    assert cluster.pods(ns) == []
