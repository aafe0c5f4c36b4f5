"""The Kubernetes objects of one FL run: namespace, identities, server, clients, Service, TLS.

The same objects go to every backend. The workload is started by command line
(``python -m fl_app.server`` / ``fl_app.client``), never imported. Security is expressed the
Kubernetes way:

* SEC1/SEC3: the NetworkPolicy set in ``k8s_fixtures/policies/fl-netpol.yaml``;
* mTLS ``native``: a ``kubernetes.io/tls`` Secret per ServiceAccount (SPIFFE identity), mounted
  into the pod, its paths passed to the workload's ``--tls-*`` flags. Flags, Secret names,
  mount paths and the server's gRPC log environment come from :mod:`.tls.native` and
  :mod:`.tls.secret`, SPIFFE ids from :class:`.tls.ca.WorkloadIdentity` (one definition each);
* mTLS ``sidecar``: the same Secret, plus a ConfigMap with the stunnel config and the nftables
  redirect, an init container that installs the redirect (as Linkerd's proxy-init does) and a
  proxy container, so the workload itself speaks plaintext inside the pod only;
* mTLS ``mesh`` (Linkerd, Kubernetes only): no Secrets and no proxy of ours: the namespace and
  pods are annotated for Linkerd's injector, and Linkerd's policy objects (``Server``,
  ``MeshTLSAuthentication``, ``AuthorizationPolicy``) admit only the client ServiceAccount on the
  server's gRPC port; SEC1/SEC3 add the NetworkPolicies Linkerd needs (:mod:`.tls.mesh`).

The network profile is a pod annotation (``ztfl.io/net-profile``): the local backend's network
overlay shapes each annotated pod's link before its processes start; on Kubernetes an init
container with NET_ADMIN runs ``tc`` (rendered when ``netem_init`` is given).

SEC3 (``restricted``) hardens it all (:mod:`.hardening`): no ServiceAccount token, Pod Security
``restricted`` (non-root, read-only root, no capabilities, RuntimeDefault). Its pods then hold
no NET_ADMIN container: the ``tc`` init container and the sidecar's ``nft`` init container give
way to annotations the node acts on (on Kubernetes the ztfl node agent; the pods wait for it
when ``node_agent_wait`` is given), and stunnel starts as the proxy's uid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from k8s_fixtures import hardening, psa
from k8s_fixtures.cluster import Obj
from k8s_fixtures.manifests import cpu_millis, memory_bytes
from k8s_fixtures.netem.profiles import NET_ANNOTATION
from k8s_fixtures.policies import policy_path
from k8s_fixtures.tls import mesh
from k8s_fixtures.tls.ca import (
    DEFAULT_TRUST_DOMAIN,
    CertificateAuthority,
    WorkloadIdentity,
    service_dns_names,
)
from k8s_fixtures.tls.native import server_args, server_env, tls_args
from k8s_fixtures.tls.redirect import ANNOTATION as REDIRECT_ANNOTATION
from k8s_fixtures.tls.secret import mounted_files, secret_name, to_secret
from k8s_fixtures.tls.sidecar import (
    INBOUND_PROXY_PORT,
    PROXY_CONTAINER,
    PROXY_UID,
    SidecarSpec,
    render_nft_rules,
    render_stunnel_config,
)

PORT = 50051
SERVER, CLIENT = "fl-server", "fl-client"
TLS_DIR = "/var/run/ztfl/tls"
SIDECAR_DIR = "/var/run/ztfl/sidecar"
DEFAULT_IMAGE = "ghcr.io/ztfl/fl-app:0.1.0"
PSA_ENFORCE = psa.ENFORCE
COMPONENT = "app.kubernetes.io/component"
ROLE = "ztfl.io/fl-role"
TLSMode = Literal["none", "native", "sidecar", "mesh"]


def _net_admin() -> dict[str, Any]:
    """The init containers' securityContext: NET_ADMIN in the bounding set; the image gives
    tc, ip and nft the file capability cap_net_admin+ep, so they run as the image's non-root
    user (10001) with the capability in effect (docker/Dockerfile)."""
    return {"capabilities": {"add": ["NET_ADMIN"]}}

# every workload container's environment; the server adds gRPC logging (tls.native.server_env)
BASE_ENV: Mapping[str, str] = {"PYTHONUNBUFFERED": "1"}


@dataclass(frozen=True)
class ClientOverride:
    """Per-client deviations, for heterogeneous or faulty clients."""

    net_profile: str | None = None
    memory_limit: str | None = None
    cpu_limit: str | None = None
    extra_args: tuple[str, ...] = ()
    service_account: str | None = None  # e.g. an identity not on the allow-list
    secret: str | None = None  # mount this Secret instead of the role's (e.g. expired cert)


@dataclass(frozen=True)
class FLRun:
    namespace: str
    run_id: str
    clients: int
    server_flags: tuple[str, ...]  # run flags for fl_app.server (rounds, model, data dir ...)
    client_flags: tuple[str, ...] = ()  # extra flags for every fl_app.client
    python: tuple[str, ...] = ("python",)  # how a container starts Python
    image: str = DEFAULT_IMAGE
    tls: TLSMode = "none"
    netpol: bool = False
    net_profile: str | None = None
    server_resources: Mapping[str, str] = field(default_factory=dict)  # limits
    client_resources: Mapping[str, str] = field(default_factory=dict)
    server_requests: Mapping[str, str] = field(default_factory=dict)  # default: the limits
    client_requests: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[int, ClientOverride] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    netem_init: Sequence[str] | None = None  # argv of a tc init container (Kubernetes only)
    hold_dir: str | None = None  # an emptyDir on the server for the harness's release file
    trust_domain: str = DEFAULT_TRUST_DOMAIN  # SPIFFE trust domain; must be the CA's
    # SEC3: hardened (no token, Pod Security restricted; k8s_fixtures.hardening); NET and the
    # sidecar redirect are then the node's job, asked for by annotation
    restricted: bool = False
    node_agent_wait: Sequence[str] | None = None  # argv of the wait for the node agent (k8s)

    def spiffe_id(self, service_account: str) -> str:
        """The SPIFFE id of a ServiceAccount of this run (as the CA certifies it)."""
        return WorkloadIdentity(self.namespace, service_account, self.trust_domain).spiffe_id


def _meta(run: FLRun, name: str, **extra: Any) -> dict[str, Any]:
    labels = {
        "app.kubernetes.io/name": "ztfl",
        "app.kubernetes.io/part-of": "pytest-ztfl",
        "ztfl.io/run": run.run_id,
        **run.labels,
        **extra.pop("labels", {}),
    }
    return {"name": name, "namespace": run.namespace, "labels": labels, **extra}


def _env(env: Mapping[str, str]) -> list[dict[str, str]]:
    """A container's ``env`` list, in ``env``'s order."""
    return [{"name": k, "value": v} for k, v in env.items()]


def _resources(limits: Mapping[str, str],
               requests: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A container's ``resources``. A limit without its request gets the limit as request,
    which is what Kubernetes defaults it to, written out so the object says what runs."""
    requests = {**limits, **(requests or {})}
    if not requests:
        return {}
    return {"limits": dict(limits), "requests": requests} if limits else {"requests": requests}


def _within(requests: Mapping[str, str], limits: Mapping[str, str]) -> dict[str, str]:
    """``requests`` lowered to any limit below them (a client's override may set a limit
    under the role's request, which Kubernetes would refuse)."""
    amount = {"cpu": cpu_millis, "memory": memory_bytes}
    out = dict(requests)
    for name, limit in limits.items():
        if name in out and name in amount and amount[name](out[name]) > amount[name](limit):
            out[name] = limit
    return out


def _tls_volumes(secret: str, sidecar_cm: str | None) -> list[dict[str, Any]]:
    vols: list[dict[str, Any]] = [{"name": "tls", "secret": {"secretName": secret}}]
    if sidecar_cm:
        vols.append({"name": "sidecar", "configMap": {"name": sidecar_cm}})
    return vols


def _sidecar_containers(run: FLRun, cm: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    mounts = [
        {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
        {"name": "sidecar", "mountPath": SIDECAR_DIR, "readOnly": True},
    ]
    init = {
        "name": f"{PROXY_CONTAINER}-init",
        "image": run.image,
        "command": ["nft", "-f", f"{SIDECAR_DIR}/redirect.nft"],
        "volumeMounts": mounts,
        "securityContext": _net_admin(),
    }
    proxy = {
        "name": PROXY_CONTAINER,
        "image": run.image,
        "command": ["stunnel", f"{SIDECAR_DIR}/stunnel.conf"],
        "volumeMounts": mounts,
        # stunnel starts as root and drops to PROXY_UID itself (setuid/setgid in its config),
        # as on the local backend: that uid is what the redirect lets through, and as the
        # image's user (10001) stunnel cannot drop (setgroups fails) and exits
        "securityContext": {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False},
    }
    if run.restricted:  # started as PROXY_UID (hardening.harden_pod); the node redirects
        del proxy["securityContext"]
        return None, proxy
    return init, proxy


def _sidecar_config(run: FLRun, name: str, spec: SidecarSpec) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(run, name),
        "data": {
            "stunnel.conf": render_stunnel_config(spec),
            "redirect.nft": render_nft_rules(spec),
        },
    }


def _pod(
    run: FLRun,
    name: str,
    role: str,
    sa: str,
    container: dict[str, Any],
    secret: str | None,
    sidecar: tuple[str, SidecarSpec] | None,
    net: str | None,
    restart: str,
) -> list[Obj]:
    objs: list[Obj] = []
    annotations = {NET_ANNOTATION: net} if net else {}
    if run.tls == "mesh":
        annotations.update(mesh.INJECT_ENABLED)
    spec: dict[str, Any] = {
        "serviceAccountName": sa,
        "restartPolicy": restart,
        "containers": [container],
    }
    init: list[dict[str, Any]] = []
    node_work = [w for w, on in (("net", net), ("redirect", sidecar)) if on]
    if run.restricted and run.node_agent_wait is not None and node_work:
        init.append(hardening.wait_container(run.image, run.node_agent_wait, node_work))
        spec["volumes"] = [hardening.podinfo_volume()]
    if run.netem_init is not None and net and not run.restricted:
        init.append(
            {
                "name": "ztfl-netem-init",
                "image": run.image,
                "command": list(run.netem_init),
                "args": [net],
                "securityContext": _net_admin(),
            }
        )
    if secret is not None:
        spec["volumes"] = [*spec.get("volumes", []),
                           *_tls_volumes(secret, sidecar[0] if sidecar else None)]
        container.setdefault("volumeMounts", []).append(
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True}
        )
    if sidecar is not None:
        cm, sc_spec = sidecar
        objs.append(_sidecar_config(run, cm, sc_spec))
        init_c, proxy = _sidecar_containers(run, cm)
        if init_c is None:
            annotations[REDIRECT_ANNOTATION] = sc_spec.redirect().to_annotation()
        else:
            init.append(init_c)
        spec["containers"].append(proxy)
    if init:
        spec["initContainers"] = init
    if run.restricted:
        hardening.harden_pod(spec, {PROXY_CONTAINER: PROXY_UID})
    meta = _meta(run, name, labels={COMPONENT: role, ROLE: role.removeprefix("fl-")})
    if annotations:
        meta["annotations"] = annotations
    objs.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
    return objs


def render(run: FLRun, ca: CertificateAuthority | None = None) -> list[Obj]:
    """Every object of the run, in apply order (namespace first, pods last). Modes ``native``
    and ``sidecar`` need ``ca`` (it issues the Secrets); ``mesh`` ignores it (Linkerd issues)."""
    harness_tls = run.tls in ("native", "sidecar")
    if harness_tls and ca is None:
        raise ValueError(f"FL run {run.namespace}: mTLS mode {run.tls} needs a CA")
    if harness_tls and ca is not None and ca.trust_domain != run.trust_domain:
        raise ValueError(
            f"FL run {run.namespace}: CA trust domain {ca.trust_domain!r} is not the run's "
            f"{run.trust_domain!r} (the allow-lists would name identities no certificate has)"
        )
    namespace: Obj = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": run.namespace,
            "labels": {"app.kubernetes.io/part-of": "pytest-ztfl", "ztfl.io/run": run.run_id},
        },
    }
    if run.tls == "mesh":
        namespace["metadata"]["annotations"] = mesh.namespace_annotations()
    shaped = run.net_profile or any(o.net_profile for o in run.overrides.values())
    if run.restricted:
        namespace["metadata"]["labels"].update(hardening.namespace_labels())
    elif run.tls == "sidecar" or (run.netem_init is not None and shaped):
        # NET_ADMIN init containers (and a proxy started as root) are refused by the
        # baseline and restricted Pod Security levels; the run's own namespace allows them
        namespace["metadata"]["labels"][PSA_ENFORCE] = "privileged"
    objs: list[Obj] = [namespace]
    accounts = {SERVER, CLIENT} | {
        o.service_account for o in run.overrides.values() if o.service_account
    }
    for sa in sorted(accounts):
        account: Obj = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(run, sa)}
        objs.append(hardening.service_account(account) if run.restricted else account)
    files = mounted_files(Path(TLS_DIR))
    if ca is not None and harness_tls:
        for sa in sorted(accounts):
            dns = service_dns_names(SERVER, run.namespace) if sa == SERVER else []
            secret = to_secret(
                ca.issue(ca.identity(run.namespace, sa), dns_names=dns),
                labels={"ztfl.io/run": run.run_id},
            )
            objs.append(secret)
    if run.netpol:
        for pol in yaml.safe_load_all(policy_path().read_text()):
            pol["metadata"]["namespace"] = run.namespace
            objs.append(pol)
        if run.tls == "mesh":
            objs += mesh.network_policies(run.namespace, SERVER, CLIENT)
    if run.tls == "mesh":
        objs += mesh.policy_objects(
            run.namespace, _meta(run, SERVER)["labels"], SERVER, "grpc", (CLIENT,)
        )
    objs.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(run, SERVER),
            "spec": {
                "selector": {COMPONENT: SERVER},
                "ports": [{"name": "grpc", "port": PORT, "targetPort": "grpc", "protocol": "TCP"}],
            },
        }
    )
    client_id = run.spiffe_id(CLIENT)
    srv_args = [
        "-m",
        "fl_app.server",
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--run-id",
        run.run_id,
        *run.server_flags,
    ]
    if run.tls == "native":
        srv_args += server_args(files, (client_id,))
    server = {
        "name": SERVER,
        "image": run.image,
        "command": [*run.python],
        "args": srv_args,
        "ports": [{"name": "grpc", "containerPort": PORT, "protocol": "TCP"}],
        "env": _env(server_env(BASE_ENV)),
        "readinessProbe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 1},
        "resources": _resources(run.server_resources, run.server_requests),
    }
    if run.hold_dir:
        server["volumeMounts"] = [{"name": "hold", "mountPath": run.hold_dir}]
    sidecar = None
    if run.tls == "sidecar":
        sidecar = (
            "fl-server-sidecar",
            SidecarSpec(pod=SERVER, files=files, inbound_ports=(PORT,), allowed_peers=(client_id,),
                        drop_privileges=not run.restricted),
        )
    secret_of = {sa: secret_name(sa) for sa in accounts} if harness_tls else {}
    server_objs = _pod(
        run, SERVER, SERVER, SERVER, server, secret_of.get(SERVER), sidecar, None, "Never"
    )
    if run.hold_dir:
        spec = server_objs[-1]["spec"]
        spec["volumes"] = [*spec.get("volumes", []), {"name": "hold", "emptyDir": {}}]
    objs += server_objs
    for i in range(run.clients):
        o = run.overrides.get(i, ClientOverride())
        args = [
            "-m",
            "fl_app.client",
            "--server",
            f"{SERVER}:{PORT}",
            "--client-id",
            str(i),
            *run.client_flags,
            *o.extra_args,
        ]
        if run.tls == "native":
            args += tls_args(files)
        limits = dict(run.client_resources)
        if o.memory_limit:
            limits["memory"] = o.memory_limit
        if o.cpu_limit:
            limits["cpu"] = o.cpu_limit
        container = {
            "name": CLIENT,
            "image": run.image,
            "command": [*run.python],
            "args": args,
            "env": _env(BASE_ENV),
            "resources": _resources(limits, _within(run.client_requests, limits)),
        }
        sa = o.service_account or CLIENT
        name = f"{CLIENT}-{i}"
        csidecar = None
        if run.tls == "sidecar":
            csidecar = (
                f"{name}-sidecar",
                SidecarSpec(
                    pod=name,
                    files=files,
                    outbound_ports=(PORT,),
                    server_peers=(run.spiffe_id(SERVER),),
                    drop_privileges=not run.restricted,
                ),
            )
        objs += _pod(
            run,
            name,
            CLIENT,
            sa,
            container,
            o.secret or secret_of.get(sa),
            csidecar,
            o.net_profile or run.net_profile,
            "Never",
        )
    return objs


__all__ = ["INBOUND_PROXY_PORT", "ClientOverride", "FLRun", "render"]
