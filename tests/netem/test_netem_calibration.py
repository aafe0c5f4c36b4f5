"""``ztfl calibrate`` on the delay line: every figure of NET0-NET4 meets its target.

The table is printed into the test output (``-s`` not needed: it bypasses capture).
"""

from __future__ import annotations

import argparse
import json

import pytest

from k8s_fixtures.netem.calibrate import calibrate, format_table
from k8s_fixtures.netem.cli import main, register
from k8s_fixtures.netem.profiles import get_profile


@pytest.mark.privileged
@pytest.mark.slow
@pytest.mark.parametrize("name", ["NET0", "NET1", "NET2", "NET3", "NET4"])
def test_calibration_passes(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    r = calibrate(get_profile(name))
    with capsys.disabled():
        print(f"\n{format_table([r])}\n({r.duration_s:.1f} s, machine {r.machine})")
    doc = json.loads(r.to_json())
    assert doc["profile"] == name and doc["passed"] == r.passed
    assert r.mechanism == ("none" if name == "NET0" else "delayline")
    failed = [f for f in r.figures if f.passed is False]
    assert not failed, "\n".join(f"{f.name}: {f.measured} vs {f.target}" for f in failed)
    names = {f.name for f in r.figures}
    assert {"rtt p50", "rtt p99", "loss up", "loss down", "throughput up", "throughput down",
            "queue drops", "jitter up IQR/1.349"} <= names


def test_cli_registers_and_rejects_unknown_profiles(capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    ap = argparse.ArgumentParser(prog="ztfl")
    register(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(["calibrate", "NET2", "--json"])
    assert args.profiles == ["NET2"] and args.json and args.mechanism == "auto"
    assert main(["calibrate", "NET9"]) == 2
    err = capsys.readouterr().err
    assert "profile NET9: unknown profile" in err and err.count("\n") == 1
