"""SEC3's proofs of hardening (RBAC and Pod Security), from probes of the running pods.

``k8s_fixtures.posture`` is exec'd in each FL container of ``fl-server`` and ``fl-client-0``
(the sidecar proxy's too); an exec runs with the container's own user, capabilities and
seccomp filter, and joins the container's cgroups, so it sees every process of the container
(a forked workload process with more rights than the probe included, :mod:`k8s_fixtures.posture`)
and judges each. Every verdict needs the container's main process among what the probe saw (a
probe that sees only itself shows nothing about the container).

* ``no-token``         no ServiceAccount token in any probed container
* ``api-refused``      where the pod sees an API server: listing the namespace's pods is
                       refused (401/403), with the token if one is mounted, else anonymously
* ``non-root``         every process of the container: no uid or gid 0 (real, effective, saved, fs)
* ``read-only-root``   creating a file in ``/`` fails with EROFS (EACCES would only show a
                       non-root user on a writable root)
* ``no-capabilities``  every capability set empty (bounding set included) and no_new_privs set
* ``seccomp``          every process runs under a seccomp filter (mode 2)
* ``psa-restricted``   a pod breaking the ``restricted`` level is refused by the namespace's Pod
                       Security admission, with that reason (the FL pods, which meet it, were
                       admitted in the same namespace)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from k8s_fixtures.cluster import Cluster, ClusterError, Obj
from k8s_fixtures.proofs.base import Proof, ProofPlan
from k8s_fixtures.tls.sidecar import PROXY_CONTAINER

PRIVILEGED = "ztfl-probe-privileged"  # breaks every rule of restricted: must be refused
Posture = dict[str, Any]


def _containers(cluster: Cluster, plan: ProofPlan) -> list[tuple[str, str]]:
    """(pod, container) to probe: each FL pod's app container, and its proxy if it has one."""
    pods = {p.name: p for p in cluster.pods(plan.namespace)}
    out = []
    for pod, app in ((plan.server, plan.server), ("fl-client-0", "fl-client")):
        out.append((pod, app))
        if pod in pods and any(c.name == PROXY_CONTAINER for c in pods[pod].containers):
            out.append((pod, PROXY_CONTAINER))
    return out


def posture(cluster: Cluster, plan: ProofPlan, pod: str, container: str) -> Posture:
    """The posture probe's report from one container ({"error": ...} when it gave none)."""
    try:
        rc, out, err = cluster.exec(
            plan.namespace, pod,
            [*plan.python, "-m", "k8s_fixtures.posture", "--namespace", plan.namespace],
            container=container,
        )
    except ClusterError as exc:
        return {"error": str(exc)}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if rc != 0 or not lines:
        return {"error": f"posture probe rc {rc}: {err.strip()[-300:]}"}
    try:
        doc: Posture = json.loads(lines[-1])
    except ValueError:
        return {"error": f"posture probe printed no JSON: {lines[-1][:200]}"}
    return doc if isinstance(doc, dict) else {"error": f"posture probe printed {doc!r}"}


def _seen(r: Posture) -> str | None:
    """Why the report shows nothing about the container, or None."""
    if "error" in r:
        return str(r["error"])
    procs = r.get("processes")
    if not isinstance(procs, list) or not any(p.get("pid") != r.get("self") for p in procs):
        return "the container's own processes were not visible to the probe"
    return None


def _judge(name: str, control: str, expect: str, reports: dict[str, Posture],
           bad: Callable[[Posture], list[str]], good: str) -> Proof:
    problems = []
    for where, r in reports.items():
        why = _seen(r)
        problems += [f"{where}: {why}"] if why else [f"{where}: {b}" for b in bad(r)]
    detail = "; ".join(problems) if problems else f"{good} in {', '.join(reports)}"
    return Proof(name, control, expect, not problems, detail)


def _ids(r: Posture) -> list[str]:
    return [f"pid {p['pid']} ({p.get('name')}) uid {p.get('uid')} gid {p.get('gid')}"
            for p in r["processes"] if 0 in (p.get("uid") or [0]) or 0 in (p.get("gid") or [0])]


def _caps(r: Posture) -> list[str]:
    sets = ("cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb")
    out = []
    for p in r["processes"]:
        held = [f"{s}={p.get(s)}" for s in sets if int(str(p.get(s) or "1"), 16) != 0]
        if held or p.get("no_new_privs") != 1:
            out.append(f"pid {p['pid']} ({p.get('name')}): {' '.join(held) or 'no capabilities'}"
                       f", no_new_privs {p.get('no_new_privs')}")
    return out


def _seccomp(r: Posture) -> list[str]:
    return [f"pid {p['pid']} ({p.get('name')}) seccomp mode {p.get('seccomp')}"
            for p in r["processes"] if p.get("seccomp") != 2]


def _root(r: Posture) -> list[str]:
    w = r.get("root_write") or {}
    if w.get("errno") == "EROFS":
        return []
    return ["a file could be created in /" if w.get("ok")
            else f"creating a file in / failed with {w.get('errno')}, not EROFS"]


def _token(r: Posture) -> list[str]:
    t = r.get("token") or {}
    return [f"token mounted at {t.get('path')}"] if t.get("present") is not False else []


def _api(r: Posture) -> list[str]:
    a = r.get("api") or {}
    if a.get("status") in (401, 403):
        return []
    return [f"listing pods answered {a.get('status')}" if a.get("status")
            else f"the API was not reached ({a.get('error')}): a refusal cannot be shown"]


def privileged_pod(plan: ProofPlan) -> Obj:
    """A pod breaking ``restricted`` (root, every default capability, no seccomp profile)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": PRIVILEGED, "namespace": plan.namespace,
                     "labels": {"app.kubernetes.io/part-of": "pytest-ztfl",
                                "ztfl.io/fl-role": "probe-privileged"}},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "probe", "image": plan.image,
            "command": [*plan.python, "-c", "import time; time.sleep(3600)"],
            "securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": True}}]},
    }


def psa_refuses(cluster: Cluster, plan: ProofPlan) -> Proof:
    """Apply :func:`privileged_pod`: the namespace's admission must refuse it for Pod Security.
    Admitted (the namespace is not restricted), it stays until the namespace is deleted: the
    proof fails and nothing is measured."""
    try:
        cluster.apply([privileged_pod(plan)])
    except ClusterError as exc:
        why = str(exc)
        ok = "PodSecurity" in why and "restricted" in why
        return Proof("psa-restricted", "pod-security", "refused", ok,
                     f"{PRIVILEGED} refused: {why}" if ok else
                     f"{PRIVILEGED} refused, but not by Pod Security restricted: {why}")
    return Proof("psa-restricted", "pod-security", "refused", False,
                 f"{PRIVILEGED} (root, no seccomp profile, privilege escalation) was admitted")


def hardening_proofs(cluster: Cluster, plan: ProofPlan) -> list[Proof]:
    """The proofs of SEC3's hardening (see the module docstring); run where it is claimed."""
    reports = {f"{pod}/{c}": posture(cluster, plan, pod, c)
               for pod, c in _containers(cluster, plan)}
    proofs = [
        _judge("no-token", "rbac", "absent", reports, _token, "no token mounted"),
    ]
    with_api = {k: r for k, r in reports.items() if (r.get("api") or {}).get("present")}
    if with_api:
        proofs.append(_judge("api-refused", "rbac", "refused", with_api, _api,
                             "listing pods refused (401/403)"))
    proofs += [
        _judge("non-root", "pod-security", "non-root", reports, _ids,
               "no process with uid or gid 0"),
        _judge("read-only-root", "pod-security", "read-only", reports, _root,
               "creating a file in / failed with EROFS"),
        _judge("no-capabilities", "pod-security", "none", reports, _caps,
               "no capability in any set, no_new_privs on"),
        _judge("seccomp", "pod-security", "filtered", reports, _seccomp,
               "every process under a seccomp filter"),
        psa_refuses(cluster, plan),
    ]
    return proofs
