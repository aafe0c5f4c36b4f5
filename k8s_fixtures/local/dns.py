"""Cluster DNS for the local backend: dnsmasq running as a pod, fed from a hosts file.

The resolver is an ordinary pod (``kube-system/cluster-dns``, labelled ``k8s-app: kube-dns``
like CoreDNS on a real cluster), so DNS traffic crosses the pod network and a NetworkPolicy
that forgets DNS egress breaks resolution just as it would on a real cluster. Each Service
``svc`` in namespace ``ns`` becomes ``svc.ns.svc.cluster.local`` with one A record per
selected pod (headless-style records: there are no virtual ClusterIPs; every existing pod the
selector matches is listed, ready or not, so the name resolves as soon as the pods exist, like
a ClusterIP). dnsmasq answers ``cluster.local`` itself (unknown names are NXDOMAIN) and
re-reads the hosts file on SIGHUP. Pods get a Kubernetes-style resolv.conf pointing at it.
It keeps running as (namespace) root with no group change (``--user=root --group=``):
setgroups() is refused in a rootless user namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from k8s_fixtures.cluster import Obj

NAMESPACE = "kube-system"
POD = "cluster-dns"
DOMAIN = "cluster.local"
LABELS = {"k8s-app": "kube-dns"}


def pod_manifest(dnsmasq: str, hosts_file: Path) -> Obj:
    """The DNS pod, as a Kubernetes object the backend applies like any other."""
    argv = [
        dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--log-facility=-",
        "--pid-file=", "--user=root", "--group=", "--port=53",
        "--no-resolv", "--no-hosts", f"--addn-hosts={hosts_file}",
        f"--local=/{DOMAIN}/", "--domain-needed", "--no-negcache",
    ]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": POD, "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1,
            # it reads the hosts file by path: no token volume overlaying /run in front of it
            "automountServiceAccountToken": False,
            "containers": [{
                "name": "dnsmasq", "image": "dnsmasq", "command": argv,
                "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                          {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                "readinessProbe": {"tcpSocket": {"port": 53}, "periodSeconds": 1},
            }],
        },
    }


def service_name(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.{DOMAIN}"


def render_hosts(records: Iterable[tuple[str, str]]) -> str:
    """hosts-file text for (fqdn, ip) records, sorted so unchanged input gives equal output."""
    return "".join(f"{ip} {fqdn}\n" for fqdn, ip in sorted(set(records)))


def resolv_conf(namespace: str, dns_ip: str) -> str:
    """What a pod in ``namespace`` gets as /etc/resolv.conf (as the kubelet writes it)."""
    return (
        f"nameserver {dns_ip}\n"
        f"search {namespace}.svc.{DOMAIN} svc.{DOMAIN} {DOMAIN}\n"
        "options ndots:5\n"
    )


def pod_hosts(pod: str, ip: str) -> str:
    """A pod's /etc/hosts (the kubelet's managed hosts file)."""
    return f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{pod}\n"
