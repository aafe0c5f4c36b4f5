"""``ztfl render --matrix quick``: SEC3 is the seed study's SEC3 (mTLS + NetworkPolicy + RBAC +
Pod Security). Its namespaces are labelled Pod Security ``restricted`` and every pod in them
passes the restricted checker (k8s_fixtures.psa); its ServiceAccounts and pods mount no token;
nothing in them holds NET_ADMIN (the node agent shapes and redirects instead). The checker
itself is shown refusing a rendered pod with any one of its rules broken, and SEC0-SEC2 keep
their namespaces as before."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from k8s_fixtures import psa
from k8s_fixtures.nodeagent import manifests as agent
from k8s_fixtures.tls.redirect import ANNOTATION as REDIRECT
from k8s_fixtures.tls.redirect import Redirect
from pytest_ztfl.cli import main

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    out = tmp_path_factory.mktemp("render-quick")
    assert main(["render", "--matrix", "quick", "--out", str(out)]) == 0
    return {
        f.name: [yaml.safe_load(p.read_text()) for p in sorted(f.glob("*.yaml"))]
        for f in sorted(Path(out).iterdir())
    }


def _sec3(rendered: dict[str, list[Obj]]) -> dict[str, list[Obj]]:
    cells = {k: v for k, v in rendered.items() if k.startswith("SEC3-")}
    assert len(cells) == 4, sorted(rendered)  # quick: NET0/NET2 x iid/noniid
    return cells


def _pods(objs: list[Obj]) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == "Pod"}


def test_every_rendered_sec3_pod_passes_the_restricted_checker(
        rendered: dict[str, list[Obj]]) -> None:
    for cell, objs in _sec3(rendered).items():
        ns = objs[0]
        assert ns["kind"] == "Namespace"
        assert ns["metadata"]["labels"][psa.ENFORCE] == "restricted", cell
        pods = _pods(objs)
        assert {"fl-server", "fl-client-0", "ztfl-probe-rogue"} <= set(pods), cell
        for name, pod in pods.items():
            assert psa.pod_violations(pod, "restricted") == [], f"{cell}/{name}"
            assert pod["spec"]["automountServiceAccountToken"] is False, f"{cell}/{name}"
            for c in [*pod["spec"]["containers"], *pod["spec"].get("initContainers", [])]:
                assert c["securityContext"]["readOnlyRootFilesystem"] is True, f"{name}/{c}"
        accounts = [o for o in objs if o["kind"] == "ServiceAccount"]
        assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts)
        assert not [o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
        for obj in objs:
            kubernetes_validate.validate(obj, "1.30", strict=True)  # raises when invalid


def test_sec3_pods_ask_the_node_for_net_and_the_redirect(
        rendered: dict[str, list[Obj]]) -> None:
    """No NET_ADMIN in a SEC3 pod: the tc and nft init containers give way to annotations
    and to a first init container that waits for the node agent's mark; the sidecar's
    stunnel starts as the proxy's uid (no setuid in its config)."""
    objs = rendered["SEC3-NET2-iid-s0"]
    pods = _pods(objs)
    client, server = pods["fl-client-0"], pods["fl-server"]
    inits = [c["name"] for c in client["spec"]["initContainers"]]
    assert inits == ["ztfl-node-agent-wait"], inits
    notes = client["metadata"]["annotations"]
    assert notes["ztfl.io/net-profile"] == "NET2"
    assert Redirect.from_annotation(notes[REDIRECT]).outbound == (50051,)
    assert Redirect.from_annotation(server["metadata"]["annotations"][REDIRECT]).inbound == (
        (50051, 4143),)
    proxy = next(c for c in server["spec"]["containers"] if c["name"] == "ztfl-proxy")
    assert proxy["securityContext"]["runAsUser"] == 2102
    confs = [o["data"]["stunnel.conf"] for o in objs
             if o["kind"] == "ConfigMap" and "stunnel.conf" in o["data"]]
    assert confs and not any("setuid" in c for c in confs)
    for cell, cell_objs in rendered.items():
        for pod in _pods(cell_objs).values():
            for c in [*pod["spec"]["containers"], *pod["spec"].get("initContainers", [])]:
                added = (c.get("securityContext") or {}).get("capabilities", {}).get("add", [])
                assert "NET_ADMIN" not in added or not cell.startswith("SEC3-"), (cell, c)


def test_other_levels_are_not_restricted(rendered: dict[str, list[Obj]]) -> None:
    """SEC0-SEC2 keep their namespaces (privileged where a NET_ADMIN init container needs it)
    and their default token; SEC0 pods break the restricted level, which shows the checker
    is not blind."""
    for cell, objs in rendered.items():
        if cell.startswith("SEC3-"):
            continue
        labels = objs[0]["metadata"]["labels"]
        assert labels.get(psa.ENFORCE) in (None, "privileged"), cell
    sec0 = _pods(rendered["SEC0-NET2-iid-s0"])["fl-client-0"]
    assert psa.pod_violations(sec0, "restricted")
    assert psa.pod_violations(sec0, "baseline")  # NET_ADMIN: not in the baseline set


def _container(pod: Obj) -> Obj:
    c: Obj = pod["spec"]["containers"][0]
    return c


BREAKS: dict[str, tuple[Callable[[Obj], None], str]] = {
    "allowPrivilegeEscalation": (
        lambda p: _container(p)["securityContext"].update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation != false"),
    "capabilities.drop": (
        lambda p: _container(p)["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
        "unrestricted capabilities"),
    "capabilities.add": (
        lambda p: _container(p)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        "non-default capabilities"),
    "runAsNonRoot": (
        lambda p: p["spec"]["securityContext"].update(runAsNonRoot=False),
        "runAsNonRoot != true"),
    "runAsUser": (
        lambda p: _container(p)["securityContext"].update(runAsUser=0), "runAsUser=0"),
    "seccompProfile": (
        lambda p: p["spec"]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "seccompProfile"),
    "no seccompProfile": (
        lambda p: p["spec"]["securityContext"].pop("seccompProfile"), "seccompProfile"),
    "privileged": (
        lambda p: _container(p)["securityContext"].update(privileged=True), "privileged"),
    "hostNetwork": (lambda p: p["spec"].update(hostNetwork=True), "host namespaces"),
    "hostPath": (
        lambda p: p["spec"].setdefault("volumes", []).append(
            {"name": "h", "hostPath": {"path": "/"}}), "hostPath volumes"),
    "hostPort": (
        lambda p: _container(p).setdefault("ports", []).append(
            {"containerPort": 80, "hostPort": 80}), "hostPort"),
    "sysctls": (
        lambda p: p["spec"]["securityContext"].update(
            sysctls=[{"name": "kernel.msgmax", "value": "1"}]), "forbidden sysctls"),
    "procMount": (
        lambda p: _container(p)["securityContext"].update(procMount="Unmasked"), "procMount"),
}


@pytest.mark.parametrize("rule", sorted(BREAKS))
def test_the_checker_refuses_a_rendered_pod_that_breaks_one_rule(
        rendered: dict[str, list[Obj]], rule: str) -> None:
    pod = copy.deepcopy(_pods(rendered["SEC3-NET2-iid-s0"])["fl-client-0"])
    assert psa.pod_violations(pod, "restricted") == []
    breaks, message = BREAKS[rule]
    breaks(pod)
    found = psa.pod_violations(pod, "restricted")
    assert found and any(message in f for f in found), found
    assert psa.refusal("restricted", found).startswith('violates PodSecurity "restricted:latest"')


def test_an_unknown_level_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown Pod Security level 'strict'"):
        psa.violations({}, "strict")


def test_the_node_agent_file_is_its_objects() -> None:
    """deploy/node-agent.yaml is what the code renders (a privileged namespace of its own)
    and validates for Kubernetes 1.30."""
    path = Path(__file__).parents[2] / "deploy" / "node-agent.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs == agent.objects()
    assert docs[0]["metadata"]["labels"][psa.ENFORCE] == "privileged"
    for d in docs:
        kubernetes_validate.validate(d, "1.30", strict=True)
