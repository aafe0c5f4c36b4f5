"""The delay line's batch window fixed from the environment, for benchmarks (pure logic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from k8s_fixtures.netem.delayline import DelayLine
from k8s_fixtures.netem.process import window_config


def test_the_window_can_be_fixed_from_the_environment_and_bad_values_say_so() -> None:
    assert window_config("") == {} and window_config("  ") == {}
    assert window_config("1500") == {"batch_us": 1500.0}
    for bad in ("fast", "0", "-5", "nan", "2e6"):
        with pytest.raises(ValueError, match=r"^ZTFL_DELAYLINE_WINDOW_US: .* is not a window"):
            window_config(bad)


@pytest.mark.parametrize(("cfg", "window_s"), [({}, 1e-3), (window_config("2000"), 2e-3)])
def test_the_delay_line_takes_the_configured_window_else_1_ms(
        tmp_path: Path, cfg: dict[str, float], window_s: float) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"status_path": str(tmp_path / "status.json"), **cfg,
                                "classes": [{"queue": 1, "label": "c1", "max_len": 64,
                                             "spec": {"delay_ms": 25, "jitter_ms": 2}}]}))
    line = DelayLine(path)
    assert line.batch_s == pytest.approx(window_s) and line.batching()
    assert line.transport()["batch_us"] == pytest.approx(window_s * 1e6)
