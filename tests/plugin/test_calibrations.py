"""A session's calibrations (pytest_ztfl.calibration.Calibrations): each profile measured once,
whether asked now or started aside; a calibration that raised is measured again when asked
again; a missed target is warned of once (pure logic: the measurement is a stand-in)."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_ztfl import calibration
from pytest_ztfl.warning_types import ZtflCalibrationWarning


def _stand_in(monkeypatch: pytest.MonkeyPatch, outcomes: list[Any]) -> list[str]:
    """``measure`` replaced: each call takes the next outcome (an exception is raised)."""
    calls: list[str] = []
    lock = threading.Lock()

    def measure(net: str, *_a: Any) -> tuple[dict[str, Any], str | None]:
        with lock:
            calls.append(net)
            out = outcomes.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out

    monkeypatch.setattr(calibration, "measure", measure)
    return calls


def _calibrations() -> calibration.Calibrations:
    return calibration.Calibrations(Path("unused"), "local", {}, lambda _line: None)


def test_a_profile_is_measured_once_asked_now_or_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _stand_in(monkeypatch, [({"ref": "calibration/NET2.json", "passed": True}, None)])
    c = _calibrations()
    wait = c.aside("NET2")
    assert c.ref("NET2") == {"ref": "calibration/NET2.json", "passed": True}
    assert wait() == c.ref("NET2") == c.aside("NET2")()
    assert calls == ["NET2"]


def test_a_calibration_that_raised_is_measured_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _stand_in(monkeypatch, [RuntimeError("probe server did not start"),
                                    ({"ref": "calibration/NET2.json", "passed": True}, None)])
    c = _calibrations()
    c.settle()  # nothing under way
    wait = c.aside("NET2")
    c.settle("NET2")  # waits, does not raise
    with pytest.raises(RuntimeError, match="probe server"):
        wait()
    assert c.ref("NET2")["passed"] is True
    assert calls == ["NET2", "NET2"]


def test_a_missed_target_is_warned_of_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch, [({"ref": "calibration/NET4.json", "passed": False},
                             "NET4: calibration misses its targets (rtt p50)")])
    c = _calibrations()
    first, second = c.aside("NET4"), c.aside("NET4")
    with pytest.warns(ZtflCalibrationWarning, match="NET4: calibration misses"):
        assert first()["passed"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert second()["passed"] is False
        assert c.ref("NET4")["passed"] is False
