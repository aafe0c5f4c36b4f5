"""The fault scenarios' pure parts, without a cluster: what each one changes in the rendered
Kubernetes objects, and how a cell's blind labels are judged against the class it expects
(the labels themselves: test_taxonomy.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import yaml
from cryptography import x509

from k8s_fixtures import workload
from k8s_fixtures.tls.ca import CertificateAuthority
from pytest_ztfl import faults
from pytest_ztfl.matrix import Cell, Workload


def _run(netpol: bool = False, tls: str = "none") -> workload.FLRun:
    return workload.FLRun(namespace="ztfl-x", run_id="x", clients=3,
                          server_flags=("--clients", "3", "--join-timeout", "300"),
                          tls=tls, netpol=netpol)  # type: ignore[arg-type]


def _objs(name: str, run: workload.FLRun, ca: CertificateAuthority | None = None) -> list[Any]:
    fault = faults.get(name)
    assert fault is not None
    return faults.render(fault, fault.prepare(run), ca)


def _pod(objs: list[Any], name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "Pod" and o["metadata"]["name"] == name)


def test_registry_names_and_requirements() -> None:
    assert set(faults.FAULTS) == {
        "client-kill", "malformed-update", "client-oom", "cpu-throttle", "mtls-expired",
        "mtls-other-ca", "mtls-identity", "netpol-no-dns", "netpol-deny-port", "netem-loss",
        "netem-partition", "delayline-kill"}
    wl = Workload(clients=3)
    sec0 = Cell("SEC0", "NET0", "iid", 0, wl)
    assert faults.FAULTS["mtls-expired"].unsupported(sec0) == (
        "fault mtls-expired needs SEC2/SEC3 with native mTLS")
    assert faults.FAULTS["netpol-no-dns"].unsupported(sec0) is not None
    assert faults.FAULTS["delayline-kill"].unsupported(sec0) is not None
    assert faults.FAULTS["client-kill"].unsupported(sec0) is None
    # faults only the local backend can inject: the Kubernetes backends refuse their cells
    from pytest_ztfl.backends import cell_unsupported

    local_only = {n for n, f in faults.FAULTS.items() if f.local_only}
    assert local_only == {"client-kill", "netem-loss", "netem-partition", "delayline-kill"}
    kill = Cell("SEC0", "NET0", "iid", 0, wl, fault="client-kill")
    assert cell_unsupported("kind", kill) is not None and cell_unsupported("local", kill) is None
    with pytest.raises(ValueError, match="unknown"):
        faults.get("nope")


def test_client_kill_restarts_only_the_target() -> None:
    objs = _objs("client-kill", _run())
    policies = {o["metadata"]["name"]: o["spec"]["restartPolicy"] for o in objs
                if o["kind"] == "Pod"}
    assert policies == {"fl-server": "Never", "fl-client-0": "Never",
                        "fl-client-1": "OnFailure", "fl-client-2": "Never"}


def test_expired_and_foreign_certificates_replace_only_the_targets_secret() -> None:
    ca = CertificateAuthority.create()
    for name in ("mtls-expired", "mtls-other-ca"):
        objs = _objs(name, _run(tls="native"), ca)
        vols = _pod(objs, "fl-client-1")["spec"]["volumes"]
        secret_name = next(v["secret"]["secretName"] for v in vols if v["name"] == "tls")
        assert secret_name == "fl-client-1-fault-mtls"
        assert next(v["secret"]["secretName"] for v in _pod(objs, "fl-client-0")["spec"]
                    ["volumes"] if v["name"] == "tls") == "fl-client-mtls"
        kinds = [o["kind"] for o in objs]
        secret_at = next(i for i, o in enumerate(objs) if o["metadata"]["name"] == secret_name)
        assert secret_at < kinds.index("Pod"), "the Secret must exist before its pod"
        import base64

        cert = x509.load_pem_x509_certificate(base64.b64decode(objs[secret_at]["data"]["tls.crt"]))
        if name == "mtls-expired":
            assert cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
            assert cert.issuer == ca.cert.subject
        else:
            assert cert.issuer != ca.cert.subject


def test_policy_faults_shut_out_only_the_target() -> None:
    for name, policies in (("netpol-no-dns", ["ztfl-allow-dns"]),
                           ("netpol-deny-port", ["ztfl-fl-client-egress"])):
        objs = _objs(name, _run(netpol=True))
        assert _pod(objs, "fl-client-1")["metadata"]["labels"][faults.FAULT_LABEL] == "target"
        assert faults.FAULT_LABEL not in _pod(objs, "fl-client-0")["metadata"]["labels"]
        for pol in policies:
            sel = next(o for o in objs if o["metadata"]["name"] == pol)["spec"]["podSelector"]
            assert {"key": faults.FAULT_LABEL, "operator": "DoesNotExist"} in sel[
                "matchExpressions"]
    # the unmodified policy file is untouched (render copies)
    text = yaml.safe_dump_all(_objs("client-kill", _run(netpol=True)))
    assert faults.FAULT_LABEL not in text


def test_prepare_rewrites_flags_and_overrides() -> None:
    run = faults.FAULTS["malformed-update"].prepare(_run())
    assert run.server_flags[run.server_flags.index("--clients") + 1] == "4"
    assert run.clients == 3
    assert run.server_flags[run.server_flags.index("--join-timeout") + 1] == "15"
    oom = faults.FAULTS["client-oom"].prepare(_run())
    assert oom.overrides[1].memory_limit == faults.OOM_LIMIT
    ident = faults.FAULTS["mtls-identity"].prepare(_run())
    assert ident.overrides[1].service_account == faults.ROGUE_SA
    assert faults.ready_names(faults.FAULTS["client-oom"], _objs("client-oom", _run())) == [
        "fl-server", "fl-client-0", "fl-client-2"]
    assert faults.ready_names(faults.FAULTS["client-kill"], []) is None


def test_agreement_judges_the_blind_labels_against_the_expected_class() -> None:
    from pytest_ztfl.taxonomy import Label

    oom = faults.FAULTS["client-oom"]
    right = [Label(None, 1, "never_joined", "resource", "its pod was OOM-killed")]
    wrong = [*right, Label(2, 0, "timeout", "unclassified", "...")]
    assert faults.agreement(oom, right) == {"expect": "resource", "classified": {"resource": 1},
                                            "agrees": True}
    assert faults.agreement(oom, wrong)["agrees"] is False
    assert faults.agreement(oom, [])["agrees"] is None
