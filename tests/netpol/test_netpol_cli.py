"""``ztfl netpol probe``: argument wiring, bad input, a passing run, and a detected hole."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from k8s_fixtures.netpol import cli, nft
from k8s_fixtures.netpol.model import ClusterView
from k8s_fixtures.netpol.nft import DenyAction, PodRuleset

DENY_X = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ghost, namespace: y}
spec:
  podSelector: {matchLabels: {pod: nobody}}
"""


def test_register_adds_netpol_probe() -> None:
    parser = argparse.ArgumentParser(prog="ztfl")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["netpol", "probe", "--policies", "p.yaml", "--json",
                              "--port", "81", "--protocol", "UDP"])
    assert args.func is cli.probe_main
    assert (args.policies, args.json, args.port, args.protocol, args.deny_action) == \
        (["p.yaml"], True, 81, "UDP", "reject")


def test_bad_policy_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                 "metadata: {name: bad}\nspec: {podSelector: {}, ingress: [{from: [{}]}]}\n")
    err = io.StringIO()
    assert cli.run_probe([str(f)], err=err, out=io.StringIO()) == 2
    assert err.getvalue().count("\n") == 1
    assert "NetworkPolicy x/bad: spec.ingress[0].from[0]: must specify a peer" in err.getvalue()


@pytest.mark.privileged
def test_probe_passes_and_prints_both_tables(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "deny.yaml"
    f.write_text(DENY_X)
    out = io.StringIO()
    assert cli.run_probe([str(f)], out=out) == 0
    text = out.getvalue()
    assert "expected (evaluator)" in text and "observed (kernel)" in text
    assert "verdict: PASS" in text and "warning: NetworkPolicy y/ghost" in text
    assert cli.main(["netpol", "probe", "--policies", str(f), "--json", "--protocol", "UDP"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "pass" and doc["protocol"] == "UDP"
    assert doc["deny_action"] == "reject" and doc["policies"] == ["x/deny-all", "y/ghost"]
    row = doc["observed"]["pods"].index("x/a")
    assert doc["observed"]["matrix"][row][doc["observed"]["pods"].index("y/a")] is False


@pytest.mark.privileged
def test_probe_detects_unenforced_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the compiler disabled, the probe must see the hole and exit 1."""
    def no_rules(cluster: ClusterView, deny_action: DenyAction = DenyAction.REJECT
                 ) -> dict[str, PodRuleset]:
        return {p.key: PodRuleset(p.key, p.netns, False, False, deny_action, "")
                for p in cluster.pods}

    monkeypatch.setattr(nft, "compile_cluster", no_rules)
    f = tmp_path / "deny.yaml"
    f.write_text(DENY_X)
    out = io.StringIO()
    assert cli.run_probe([str(f)], out=out, as_json=True) == 1
    doc = json.loads(out.getvalue())
    assert doc["verdict"] == "fail"
    assert {"src": "x/a", "dst": "y/a", "expected": False, "observed": True,
            "error": None} in doc["mismatches"]
