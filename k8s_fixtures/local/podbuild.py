"""From an admitted pod to a runnable one: its directory with resolv.conf and hosts, its
volumes (the ServiceAccount token volume included), and each container's environment
(Secret/ConfigMap references resolved), mounts, security context, cgroup and log file, as a
:class:`~k8s_fixtures.local.pods.PodRun` the supervisor starts.

The token volume: unless the pod or its ServiceAccount sets ``automountServiceAccountToken:
false``, every container gets ``/var/run/secrets/kubernetes.io/serviceaccount`` (``token``,
``namespace``) read-only, as the kubelet mounts it. The token is an unsigned JWT naming the
account: there is no API server here to present it to, but a pod holding one is a pod an
attacker could take it from, which is what the SEC3 proof looks for.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from k8s_fixtures.cluster import Obj
from k8s_fixtures.local import dns, state
from k8s_fixtures.local.admission import Key, NewPod
from k8s_fixtures.local.cgroups import CgroupRoot
from k8s_fixtures.local.pods import DEFAULT_PATH, ContainerRun, PodRun
from k8s_fixtures.local.volumes import materialize
from k8s_fixtures.manifests import Container, config_data

TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def lookup_in(objects: Mapping[Key, Obj],
              namespace: str) -> Callable[[str, str], dict[str, bytes] | None]:
    """The data of a ConfigMap or Secret of ``namespace`` by (kind, name), None if absent."""
    def lookup(kind: str, name: str) -> dict[str, bytes] | None:
        obj = objects.get((kind, namespace, name))
        return None if obj is None else config_data(obj)
    return lookup


def dns_ip_for(pods: Mapping[tuple[str, str], PodRun], link: Any) -> str:
    """The cluster DNS pod's IP (the pod's own while the DNS pod itself is being created)."""
    pod = pods.get((dns.NAMESPACE, dns.POD))
    return pod.link.ip if pod is not None else str(link.ip)


def automounts_token(new: NewPod, objects: Mapping[Key, Obj]) -> bool:
    """The pod's ``automountServiceAccountToken``, else its ServiceAccount's, else true."""
    if new.spec.automount_token is not None:
        return new.spec.automount_token
    account = objects.get(("ServiceAccount", new.namespace, new.spec.service_account)) or {}
    return bool(account.get("automountServiceAccountToken", True))


def _b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def token_volume(pod_dir: Path, new: NewPod) -> Path:
    """Write the pod's token volume (``token``, ``namespace``); its directory."""
    d = pod_dir / "volumes" / "_serviceaccount"  # not a volume name (a DNS label)
    d.mkdir(parents=True)
    subject = f"system:serviceaccount:{new.namespace}:{new.spec.service_account}"
    claims = {"iss": "ztfl-local", "sub": subject,
              "kubernetes.io": {"namespace": new.namespace, "pod": {"name": new.name},
                                "serviceaccount": {"name": new.spec.service_account}}}
    (d / "token").write_text(f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.")
    (d / "namespace").write_text(new.namespace)
    for f in d.iterdir():
        f.chmod(0o644)
    return d


def pod_run(new: NewPod, link: Any, st: state.StateDir, objects: Mapping[Key, Obj],
            pods: Mapping[tuple[str, str], PodRun], cgroups: CgroupRoot | None) -> PodRun:
    """Prepare ``new`` on ``link`` in the state directory ``st``; nothing is started yet."""
    d = st.path / "pods" / f"{new.namespace}.{new.name}"
    d.mkdir(parents=True)
    (d / "resolv.conf").write_text(dns.resolv_conf(new.namespace, dns_ip_for(pods, link)))
    (d / "hosts").write_text(dns.pod_hosts(new.name, link.ip))
    lookup = lookup_in(objects, new.namespace)
    vols = materialize(d, new.spec, lookup)
    token = token_volume(d, new) if automounts_token(new, objects) else None
    files = [(str(d / "resolv.conf"), "/etc/resolv.conf"), (str(d / "hosts"), "/etc/hosts")]

    def run(c: Container, init: bool) -> ContainerRun:
        uid = c.security.run_as_user
        env = {"PATH": DEFAULT_PATH, "HOME": "/root" if not uid else "/",
               "HOSTNAME": new.name, state.MARKER: st.marker}
        for e in c.env:
            if e.value is not None:
                env[e.name] = e.value
            elif e.source is not None:
                data = lookup("Secret" if e.source[0] == "secretKeyRef" else "ConfigMap",
                              e.source[1])
                if data is not None and e.source[2] in data:
                    env[e.name] = data[e.source[2]].decode(errors="replace")
        mounts: list[dict[str, object]] = [
            {"src": str(vols[m.name]), "dst": m.mount_path, "ro": m.read_only}
            for m in c.volume_mounts
        ]
        if token is not None:
            mounts.append({"src": str(token), "dst": TOKEN_DIR, "ro": True})
        cg = cgroups.container(f"{new.namespace}.{new.name}.{c.name}") \
            if cgroups else None
        log = d / f"{c.name}.log"
        log.touch()  # exists before the container starts: logs(follow=True) can wait on it
        return ContainerRun(c, env, mounts, files, d / f"{c.name}.json", log, cg, init=init)

    return PodRun(new.namespace, new.name, new.labels, new.spec, link, d,
                  [run(c, False) for c in new.spec.containers], new.owner,
                  init=[run(c, True) for c in new.spec.init_containers],
                  annotations=dict(new.annotations))
