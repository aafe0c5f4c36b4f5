"""The instrument's check arms through stored results (``--ztfl-resume``: no cluster): judged
once every block has run, in ``test_instrument_checks[<kind>]``, with the whole run's instance
noise (as the report and benchmarks/trust_check.py judge them); never in a cell's own test,
whose noise would be the blocks' so far. A known delay that is missing warns for every seed, one
that is there warns for none, and a matrix without check arms has no such test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ztfl_plugin_support import Tripwire, apply_env, report_synth, subprocess_env

from pytest_ztfl import matrix as mx

pytest_plugins = ("pytester",)

CHECKS_YAML = """\
name: checks
sec: [SEC0, SEC1]
net: [NET0]
data: [iid]
seeds: [0, 1, 2]
checks: [aa, delay10ms]
workload: {clients: 4, rounds: 12, eval_every: 3, target_accuracy: 0.9}
"""
NO_DELAY = {f"SEC0-NET0-iid-s{s}-delay10ms": {"delay_s": 0.0} for s in (0, 1, 2)}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path) -> Iterator[None]:
    apply_env(monkeypatch, subprocess_env(data_dir, tmp_path / "state"))
    wire = Tripwire(monkeypatch)
    yield
    assert wire.calls == []


def _run(pytester: pytest.Pytester, out: Path, arms: dict[str, dict[str, Any]],
         yaml: str = CHECKS_YAML, *extra: str) -> pytest.RunResult:
    path = pytester.path / "checks.yaml"
    path.write_text(yaml)
    report_synth().build_results(out, mx.load(str(path)), design=True, jitter=0.01, arms=arms)
    return pytester.runpytest_inprocess(f"--ztfl-matrix={path}", f"--ztfl-out={out}",
                                        "--ztfl-resume", "-p", "no:cacheprovider", *extra)


def _instrument_warnings(result: pytest.RunResult) -> list[tuple[str, str]]:
    """(test node id, message) of every ZtflInstrumentWarning the run recorded."""
    calls = result.reprec.getcalls("pytest_warning_recorded")  # type: ignore[attr-defined]
    return [(c.nodeid, str(c.warning_message.message)) for c in calls
            if c.warning_message.category.__name__ == "ZtflInstrumentWarning"]


def _outcomes(result: pytest.RunResult) -> dict[str, str]:
    """test name -> the outcome of its call phase."""
    reports = result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
    return {r.nodeid.rsplit("::", 1)[-1]: r.outcome for r in reports if r.when == "call"}


@pytest.mark.usefixtures("env")
def test_a_missing_known_delay_warns_once_per_seed_at_the_end(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    result = _run(pytester, tmp_path / "out", NO_DELAY)
    found = _instrument_warnings(result)
    assert sorted(n.rsplit("::", 1)[-1] for n, _ in found) == [
        "test_instrument_checks[delay10ms]"] * 3, result.stdout.str()
    for s, (_, message) in zip((0, 1, 2), found, strict=True):
        assert message.startswith(f"SEC0-NET0-iid-s{s}-delay10ms: a known 10 ms per round was "
                                  "not found in the participants' path time"), message
    outcomes = _outcomes(result)
    # the instrument's findings are warnings, not failures of what is measured
    assert outcomes["test_instrument_checks[delay10ms]"] == "passed"
    assert outcomes["test_instrument_checks[aa]"] == "passed"


@pytest.mark.usefixtures("env")
def test_a_known_delay_that_is_there_warns_nowhere(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    result = _run(pytester, tmp_path / "out", {})
    assert _instrument_warnings(result) == [], result.stdout.str()
    assert _outcomes(result)["test_instrument_checks[delay10ms]"] == "passed"


@pytest.mark.usefixtures("env")
def test_a_matrix_without_check_arms_has_no_instrument_test(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    yaml = CHECKS_YAML.replace("checks: [aa, delay10ms]\n", "")
    result = _run(pytester, tmp_path / "out", {}, yaml, "--collect-only", "-q")
    text = result.stdout.str()
    assert "test_fl[SEC1-NET0-iid-s2]" in text and "test_overhead_pooled[SEC1-NET0]" in text
    assert "test_instrument_checks" not in text
