"""A reload (SIGHUP: a schedule step, a partition) reconfigures only the classes whose
parameters changed; the others keep their generators and draws (pure logic over DelayLine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from k8s_fixtures.netem.delayline import DelayLine
from k8s_fixtures.netem.models import ClassSpec, DelaySampler, class_rngs

SPEC: dict[str, Any] = {"delay_ms": 25, "jitter_ms": 2, "seed": 7}


def _write(path: Path, specs: dict[int, dict[str, Any]], generation: int) -> None:
    path.write_text(json.dumps({
        "status_path": str(path.with_name("status.json")), "generation": generation,
        "classes": [{"queue": q, "label": f"c{q}", "max_len": 64, "spec": s}
                    for q, s in specs.items()]}))


def test_only_the_changed_class_is_reconfigured_the_others_draw_on(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.json"
    _write(cfg, {1: SPEC, 2: SPEC}, 0)
    line = DelayLine(cfg)
    kept = line.classes[2].delay
    first = [kept.sample() for _ in range(5)]
    _write(cfg, {1: {**SPEC, "delay_ms": 80}, 2: SPEC}, 1)
    assert line.do_reload() == {1} and line.error == "" and line.generation == 1
    assert line.classes[1].spec.delay_ms == 80
    # class 2's stream goes on where it was: the 6th-10th draws of a fresh generator
    fresh = DelaySampler(ClassSpec(**SPEC), class_rngs(7, 2)[0])
    expected = [fresh.sample() for _ in range(10)]
    assert line.classes[2].delay is kept and first == expected[:5]
    assert [kept.sample() for _ in range(5)] == expected[5:]
    # class 1 starts its new stream from its seed, as a class configured afresh does
    new = DelaySampler(ClassSpec(**{**SPEC, "delay_ms": 80}), class_rngs(7, 1)[0])
    assert line.classes[1].delay.sample() == new.sample()


def test_a_reload_that_changes_nothing_reconfigures_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.json"
    _write(cfg, {1: SPEC, 2: SPEC}, 0)
    line = DelayLine(cfg)
    before = {q: c.delay for q, c in line.classes.items()}
    _write(cfg, {1: SPEC, 2: SPEC}, 1)
    assert line.do_reload() == set() and line.generation == 1
    assert {q: c.delay for q, c in line.classes.items()} == before


def test_a_failed_reload_changes_nothing_and_says_why(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.json"
    _write(cfg, {1: SPEC}, 0)
    line = DelayLine(cfg)
    _write(cfg, {1: {**SPEC, "delay_ms": 80}, 9: SPEC}, 1)
    assert line.do_reload() == set()
    assert line.error == "reload failed: reload names queues [9] that are not bound"
    assert line.classes[1].spec.delay_ms == 25 and line.generation == 0
