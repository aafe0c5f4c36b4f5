"""mTLS faults: a client with an expired certificate, one with a certificate of another CA,
one whose identity is not on the allow-list."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import TYPE_CHECKING

from k8s_fixtures import workload
from pytest_ztfl.faults.base import (
    TARGET,
    Fault,
    Obj,
    ObjectsHook,
    override,
    pod_obj,
    short_join,
)

if TYPE_CHECKING:
    from k8s_fixtures.tls.ca import CertificateAuthority



def _tls_objects(expired: bool) -> ObjectsHook:
    def hook(objs: list[Obj], run: workload.FLRun, ca: CertificateAuthority | None) -> list[Obj]:
        from k8s_fixtures.tls.ca import CertificateAuthority
        from k8s_fixtures.tls.secret import to_secret

        if ca is None:
            raise ValueError("this fault needs mTLS (a CA)")
        name = f"{workload.CLIENT}-{TARGET}-fault-mtls"
        if expired:
            now = dt.datetime.now(dt.UTC)
            issued = ca.issue(
                ca.identity(run.namespace, workload.CLIENT),
                not_before=now - dt.timedelta(days=2),
                not_after=now - dt.timedelta(days=1),
            )
        else:
            other = CertificateAuthority.create(name="ztfl fault: another CA")
            issued = replace(
                other.issue(other.identity(run.namespace, workload.CLIENT)), ca_pem=ca.cert_pem
            )  # trusts the right CA, presents a foreign cert
        secret = to_secret(issued, name=name, labels={"ztfl.io/run": run.run_id})
        pod = pod_obj(objs, f"{workload.CLIENT}-{TARGET}")
        for vol in pod["spec"].get("volumes", []):
            if vol["name"] == "tls":
                vol["secret"]["secretName"] = name
        first_pod = next(i for i, o in enumerate(objs) if o.get("kind") == "Pod")
        return [*objs[:first_pod], secret, *objs[first_pod:]]

    return hook


ROGUE_SA = "fl-rogue"


def _spiffe_prepare(run: workload.FLRun) -> workload.FLRun:
    return short_join(override(run, TARGET, service_account=ROGUE_SA))


FAULTS = (
    Fault(
        "mtls-expired",
        "mtls",
        "client 1 presents an expired certificate",
        prepare=short_join,
        objects=_tls_objects(expired=True),
        requires=frozenset({"tls"}),
    ),
    Fault(
        "mtls-other-ca",
        "mtls",
        "client 1 presents a certificate of another CA",
        prepare=short_join,
        objects=_tls_objects(expired=False),
        requires=frozenset({"tls"}),
    ),
    Fault(
        "mtls-identity",
        "mtls",
        f"client 1 runs as ServiceAccount {ROGUE_SA} (SPIFFE id not on the allow-list)",
        prepare=_spiffe_prepare,
        requires=frozenset({"tls"}),
        unready=frozenset({f"{workload.CLIENT}-{TARGET}"}),
    ),
)
