"""End to end on loopback: the real server and client processes started by ``fl_app.local``.

* 3 clients x 3 rounds: the event sequence is complete and in order, the log is valid, the model
  learns (accuracy well above chance), and the launcher leaves no process behind.
* A client SIGKILLed while its round is in flight: that round closes with a ``disconnect``
  failure for it, still succeeds with the remaining participants, and the run completes.
* The issue's acceptance run (5 clients x 20 rounds, small model, iid) reaches 0.95. Opt-in with
  ``ZTFL_ACCEPTANCE=1``: about 36 s on an idle 2-core machine but 60-70 s when it is shared,
  over the 60 s allowed for a default test.
* Invalid command-line values exit non-zero with one readable stderr line naming the flag,
  before any process is started.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fl_testlib import complete_events, end_process_group, poll

from fl_app import config as cfg
from fl_app import data as fl_data
from fl_app import local
from fl_app.events import read_events

RUN_TIMEOUT = 300.0  # generous upper bound on a shared 2-core machine; a deadline, not a sleep


def run_local(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """Run ``python -m fl_app.local`` in its own process group; return the result and the PIDs
    of any process it left behind (killed here, so a failing test leaks nothing)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fl_app.local", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        leaked = end_process_group(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), leaked


def between(events: list[dict[str, Any]], start: int, end: int) -> list[dict[str, Any]]:
    return events[start + 1 : end]


def assert_round_sequence(
    events: list[dict[str, Any]], rounds: int, clients: set[int]
) -> dict[int, dict[str, Any]]:
    """Check the per-round structure of a clean run; return round_end events by round."""
    kinds = [e["event"] for e in events]
    ts = [e["t"] for e in events]
    assert ts == sorted(ts), "event times go backwards"
    assert kinds[:2] == ["run_start", "server_ready"]
    first_round = kinds.index("round_start")
    joined = [e["client"] for e in events[:first_round] if e["event"] == "client_joined"]
    assert sorted(joined) == sorted(clients)
    ends = {}
    for r in range(1, rounds + 1):
        s = next(i for i, e in enumerate(events) if e["event"] == "round_start" and e["round"] == r)
        t = next(i for i, e in enumerate(events) if e["event"] == "round_end" and e["round"] == r)
        assert s < t
        assert set(events[s]["selected"]) == clients
        inside = between(events, s, t)
        assert {e["event"] for e in inside} == {"client_update"}, f"round {r}: {inside}"
        assert sorted(e["client"] for e in inside) == sorted(clients)
        assert all(e["round"] == r for e in inside)
        end = events[t]
        assert end["ok"] is True and end["participants"] == sorted(clients)
        assert end["failed"] == []
        assert end["duration"] > 0 and end["aggregation_seconds"] >= 0
        if r > 1:
            prev_end = next(
                i for i, e in enumerate(events) if e["event"] == "round_end" and e["round"] == r - 1
            )
            assert prev_end < s, "rounds overlap"
        ends[r] = end
    assert kinds[-1] == "run_end"
    return ends


@pytest.mark.slow
def test_three_clients_three_rounds(data_dir: Path, tmp_path: Path) -> None:
    events_path = tmp_path / "events.jsonl"
    res, leaked = run_local(
        [
            "--clients", "3", "--rounds", "3", "--model", "small", "--split", "iid",
            "--data-dir", str(data_dir), "--events", str(events_path), "--run-id", "e2e-3x3",
        ],
        tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert leaked == [], "fl_app.local left processes running"
    log = read_events(events_path)  # validates every line against the schema
    events = log.events
    assert_round_sequence(events, rounds=3, clients={0, 1, 2})
    start = log.of("run_start")[0]
    assert start["run_id"] == "e2e-3x3" and start["model_params"] == 46_730
    assert start["config"]["num_clients"] == 3 and start["config"]["min_participants"] == 2
    assert sum(p["samples"] for p in start["partition"]) == 8000
    assert start["data_source"] == "offline-test-split"
    (ev,) = log.of("eval")  # eval_every 5 > rounds: only the final evaluation
    assert ev["round"] == 3 and ev["accuracy"] > 0.5, "no better than chance"
    tail = [e["event"] for e in events[-3:]]
    assert tail in (["round_end", "eval", "run_end"], ["eval", "target_reached", "run_end"])
    assert bool(log.of("target_reached")) == (ev["accuracy"] >= 0.95)
    end = log.of("run_end")[0]
    assert end["ok"] is True and end["rounds_completed"] == 3 and end["reason"] == "completed"
    assert end["final_accuracy"] == ev["accuracy"]
    assert log.of("failure") == []
    assert "run e2e-3x3: OK  3/3 rounds, 0 failed" in res.stdout


def launch_args(data_dir: Path, *extra: str) -> Any:
    p = cfg.Parser(prog="test")
    cfg.add_run_args(p)
    ns = p.parse_args(["--data-dir", str(data_dir), *extra])
    ns.threads = 1
    return ns


@pytest.mark.slow
def test_client_killed_mid_round_is_a_disconnect_and_the_run_completes(
    data_dir: Path, tmp_path: Path
) -> None:
    events_path = tmp_path / "events.jsonl"
    ns = launch_args(
        data_dir, "--clients", "3", "--rounds", "3", "--min-participants", "2",
        "--round-deadline", "60", "--run-id", "e2e-kill",
    )  # fmt: skip
    victim_id, kill_round = 2, 2
    launch = local.Launch(ns, events_path, io.StringIO())
    try:
        launch.start()
        victim = launch.clients[victim_id]
        poll(
            f"round_start of round {kill_round}",
            lambda: any(
                e["event"] == "round_start" and e["round"] == kill_round
                for e in complete_events(events_path)
            ),
            RUN_TIMEOUT,
        )
        os.kill(victim.pid, signal.SIGKILL)
        assert launch.server is not None
        server = launch.server
        poll("the server to finish the run", lambda: server.poll() is not None, RUN_TIMEOUT)
        assert launch.wait() == 0
        assert victim.returncode == -signal.SIGKILL
    finally:
        launch.stop()
    log = read_events(events_path)
    ups = {(e["round"], e["client"]) for e in log.of("client_update")}
    assert (1, victim_id) in ups
    assert (kill_round, victim_id) not in ups, "the kill came after the victim's update"
    failures = [(e["round"], e["client"], e["class"], e["reason"]) for e in log.of("failure")]
    assert failures == [(kill_round, victim_id, "disconnect", "stream_closed")]
    ends = {e["round"]: e for e in log.of("round_end")}
    assert ends[kill_round]["ok"] is True
    assert ends[kill_round]["participants"] == [0, 1]
    assert ends[kill_round]["failed"] == [
        {"client": victim_id, "class": "disconnect", "reason": "stream_closed"}
    ]
    assert ends[kill_round]["duration"] < 30, "the round waited for the deadline"
    assert [e["client"] for e in log.of("client_left")] == [victim_id]
    third = next(e for e in log.of("round_start") if e["round"] == 3)
    assert third["selected"] == [0, 1]
    assert ends[3]["ok"] and ends[3]["participants"] == [0, 1]
    end = log.of("run_end")[0]
    assert end["ok"] is True and end["rounds_completed"] == 3


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("ZTFL_ACCEPTANCE") != "1",
    reason="acceptance run (5 clients x 20 rounds) takes 36 s idle but 60-70 s on this shared "
    "2-core machine: set ZTFL_ACCEPTANCE=1 to run it",
)
def test_acceptance_five_clients_twenty_rounds_reaches_95_percent(
    data_dir: Path, tmp_path: Path
) -> None:
    events_path = tmp_path / "events.jsonl"
    res, leaked = run_local(
        [
            "--clients", "5", "--rounds", "20", "--model", "small",
            "--data-dir", str(data_dir), "--events", str(events_path),
        ],
        tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert leaked == []
    log = read_events(events_path)
    assert_round_sequence(log.events, rounds=20, clients={0, 1, 2, 3, 4})
    assert [e["round"] for e in log.of("eval")] == [5, 10, 15, 20]
    final = log.of("run_end")[0]
    assert final["ok"] is True and final["final_accuracy"] >= 0.95
    (reached,) = log.of("target_reached")
    assert reached["target"] == 0.95 and reached["tta_seconds"] > 0


# ---- invalid command lines -------------------------------------------------------------------


def no_processes(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"a process was started: {args[0] if args else kwargs}")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--rounds", "0"], "--rounds 0"),
        (["--rounds", "-2"], "--rounds -2"),
        (["--rounds", "two"], "--rounds"),
        (["--split", "dirichlet-0"], "--split"),
        (["--split", "dirichlet--1"], "--split"),
        (["--split", "noniid"], "--split"),
        (["--clients", "0"], "--clients 0"),
        (["--min-participants", "9"], "--min-participants 9"),
        (["--lr", "nan"], "--lr nan"),
        (["--model", "huge"], "--model"),
    ],
)
def test_invalid_flag_is_one_line_naming_it_and_starts_nothing(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    flag: str,
) -> None:
    monkeypatch.setattr(subprocess, "Popen", no_processes)
    events = tmp_path / "events.jsonl"
    with pytest.raises(SystemExit) as info:
        local.main(["--data-dir", str(data_dir), "--events", str(events), *argv])
    assert info.value.code not in (0, None)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert err.startswith("fl_app.local: error: ") and flag in err
    assert not events.exists()


def offline_download(root: Path) -> None:
    """Stand-in for torchvision's download on a machine without internet (its real message
    spans several lines), so the test means the same online and offline."""
    raise RuntimeError(
        "Error downloading train-images-idx3-ubyte.gz:\n"
        "Tried https://ossci-datasets.s3.amazonaws.com/mnist/, got:\n"
        "<urlopen error [Errno -2] Name or service not known>\n"
    )


def test_missing_data_dir_is_one_line_naming_the_flag_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(subprocess, "Popen", no_processes)
    monkeypatch.setattr(fl_data, "_download", offline_download)
    missing = tmp_path / "no-such-dir"
    with pytest.raises(SystemExit) as info:
        local.main(["--data-dir", str(missing), "--events", str(tmp_path / "e.jsonl")])
    assert info.value.code not in (0, None)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert err.startswith("fl_app.local: error: --data-dir ") and str(missing) in err


def test_cli_refusal_from_the_real_entry_point(data_dir: Path, tmp_path: Path) -> None:
    res, leaked = run_local(
        ["--rounds", "0", "--data-dir", str(data_dir), "--events", str(tmp_path / "e.jsonl")],
        tmp_path,
    )
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr == "fl_app.local: error: --rounds 0: must be >= 1\n"
    assert leaked == []
