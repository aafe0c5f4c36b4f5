"""The event log (fl_app.events): what EventLog writes, parse_events reads back, and a malformed
line is refused with its file and line number."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from fl_app.events import REQUIRED, SCHEMA, EventLog, EventLogError, parse_events, read_events


def minimal_fields(kind: str) -> dict[str, Any]:
    return {k: 1 for k in REQUIRED[kind]}


def test_every_event_type_round_trips_through_stream_and_file(tmp_path: Path) -> None:
    stream = io.StringIO()
    path = tmp_path / "events.jsonl"
    log = EventLog("cell-1", stream, path)
    written = [log.emit(kind, **minimal_fields(kind), extra="x") for kind in REQUIRED]
    log.close()
    for text, source in ((stream.getvalue(), "<stream>"), (path.read_text(), str(path))):
        assert text.endswith("\n") and text.count("\n") == len(REQUIRED)
        parsed = parse_events(text.splitlines(keepends=True), source)
        assert parsed.events == written
        assert parsed.skipped_lines == 0
    first = written[0]
    assert first["v"] == SCHEMA and first["run_id"] == "cell-1"
    assert isinstance(first["t"], float) and isinstance(first["wall"], float)
    ts = [e["t"] for e in written]
    assert ts == sorted(ts) and ts[0] >= 0


def test_the_file_is_appended_to_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    for run in ("a", "b"):
        log = EventLog(run, None, path)
        log.emit("server_ready", port=1)
        log.close()
    assert [e["run_id"] for e in read_events(path).events] == ["a", "b"]


def test_concurrent_emits_never_interleave_lines() -> None:
    stream = io.StringIO()
    log = EventLog("r", stream)

    def burst(client: int) -> None:
        for i in range(200):
            log.emit("client_left", client=client, reason="x" * (i % 50))

    threads = [threading.Thread(target=burst, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(parse_events(stream.getvalue().splitlines()).of("client_left")) == 800


def test_emit_refuses_unknown_types_missing_fields_and_nan() -> None:
    log = EventLog("r", io.StringIO())
    with pytest.raises(ValueError, match="unknown event type 'nope'"):
        log.emit("nope")
    with pytest.raises(ValueError, match=r"event round_start: missing fields \['selected'\]"):
        log.emit("round_start", round=1)
    with pytest.raises(ValueError):  # the log is strict JSON: no NaN/Infinity tokens
        log.emit("eval", round=1, accuracy=float("nan"), loss=1.0, seconds=0.1)


def line(**fields: Any) -> str:
    return json.dumps(fields)


GOOD = line(v=SCHEMA, event="server_ready", run_id="r", t=0.1, wall=1.0, port=5)


def test_reader_skips_and_counts_non_event_lines() -> None:
    parsed = parse_events(["WARNING: grpc says hi\n", "\n", GOOD + "\n", "[1, 2]\n"])
    assert [e["event"] for e in parsed.events] == ["server_ready"]
    assert parsed.skipped_lines == 2  # blank lines are not counted
    assert parsed.of("server_ready")[0]["port"] == 5 and parsed.of("eval") == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"event": "server_ready",', "not valid JSON"),
        (line(v=SCHEMA, run_id="r", t=0, wall=0), "a JSON object without an 'event' field"),
        (
            line(v="ztfl.fl/0", event="server_ready", run_id="r", t=0, wall=0, port=1),
            "schema 'ztfl.fl/0', this reader knows ztfl.fl/1",
        ),
        (line(event="server_ready", run_id="r", t=0, wall=0, port=1), "schema None"),
        (line(v=SCHEMA, event="party", run_id="r", t=0, wall=0), "unknown event type 'party'"),
        (line(v=SCHEMA, event="server_ready", run_id="r", t=0, wall=0), "lacks port"),
        (line(v=SCHEMA, event="server_ready", port=1), "lacks t, wall, run_id"),
    ],
    ids=["json", "no-event", "old-schema", "no-schema", "unknown-type", "no-field", "no-clock"],
)
def test_reader_names_file_and_line_of_a_malformed_event(
    tmp_path: Path, bad: str, message: str
) -> None:
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join([GOOD, "noise", bad, GOOD]) + "\n")
    with pytest.raises(EventLogError) as info:
        read_events(path)
    assert str(info.value).startswith(f"{path}:3: ")
    assert message in str(info.value)
