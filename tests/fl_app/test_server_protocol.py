"""The FL server's gRPC protocol, driven directly with the generated stub against a real
in-process server on 127.0.0.1 (fl_app.server.FLServer + start_grpc_server).

The test plays the coordinator (it calls ``FLServer.run_round`` in a thread) and every client
(Join streams and Submit calls), so it can send what a real client never would: unknown ids,
wrong shapes and dtypes, NaN/Inf, oversized messages, bad sample counts, duplicates, stale
rounds, and streams cancelled mid-round. Each must be refused with the right gRPC status and a
``failure`` event with the right class and reason; the round must still close with the clients
that remain, the server must keep serving, and the next round's broadcast must be the FedAvg of
the accepted updates only (checked against a float64 numpy reference).
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from fl_testlib import poll

from fl_app.config import ServerConfig
from fl_app.events import EventLog, parse_events
from fl_app.proto import fl_pb2, fl_pb2_grpc
from fl_app.server import FLServer, start_grpc_server
from fl_app.tensors import NDArrays, from_proto, to_proto

WAIT = 20.0  # upper bound for anything that should take milliseconds; a deadline, not a sleep
NUM_CLIENTS = 3


class Stream:
    """A client's Join stream, pumped into a queue by a thread so reads can have deadlines."""

    def __init__(self, stub: Any, cid: int) -> None:
        self.cid = cid
        self.call = stub.Join(fl_pb2.JoinRequest(client_id=cid), timeout=120)
        self.items: queue.Queue[fl_pb2.Task | grpc.RpcError | None] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for task in self.call:
                self.items.put(task)
        except grpc.RpcError as exc:
            self.items.put(exc)
        self.items.put(None)

    def next(self) -> fl_pb2.Task:
        item = self.items.get(timeout=WAIT)
        assert isinstance(item, fl_pb2.Task), f"client {self.cid}: stream gave {item!r}"
        return item

    def error(self) -> grpc.RpcError:
        item = self.items.get(timeout=WAIT)
        assert isinstance(item, grpc.RpcError), f"client {self.cid}: expected an error: {item!r}"
        return item

    def cancel(self) -> None:
        self.call.cancel()


@dataclass
class Harness:
    fl: FLServer
    server: grpc.Server
    port: int
    channel: grpc.Channel
    stub: Any
    out: io.StringIO
    streams: dict[int, Stream] = field(default_factory=dict)
    rounds: list[threading.Thread] = field(default_factory=list)
    results: dict[int, dict[str, Any]] = field(default_factory=dict)

    # ---- events ----
    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        parsed = parse_events(self.out.getvalue().splitlines(), "<server events>")
        return parsed.events if kind is None else parsed.of(kind)

    def failures(self) -> list[tuple[Any, Any, str, str]]:
        return [(e["round"], e["client"], e["class"], e["reason"]) for e in self.events("failure")]

    # ---- clients ----
    def join(self, cid: int) -> Stream:
        s = Stream(self.stub, cid)
        task = s.next()
        assert task.kind == fl_pb2.Task.SETUP and task.spec.num_clients == self.fl.conf.num_clients
        self.streams[cid] = s
        return s

    def submit(self, update: fl_pb2.Update) -> fl_pb2.Ack:
        ack: fl_pb2.Ack = self.stub.Submit(update, timeout=WAIT)
        return ack

    def refused(self, update: fl_pb2.Update) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            self.submit(update)
        return info.value

    # ---- coordinator ----
    def start_round(self, number: int) -> dict[int, fl_pb2.Task]:
        """Run round ``number`` in a thread; return the TRAIN task each open stream got."""
        t = threading.Thread(
            target=lambda: self.results.__setitem__(number, self.fl.run_round(number)),
            daemon=True,
        )
        t.start()
        self.rounds.append(t)
        tasks = {}
        for cid, s in self.streams.items():
            if s.call.is_active():
                task = s.next()
                assert task.kind == fl_pb2.Task.TRAIN and task.round == number
                tasks[cid] = task
        return tasks

    def end_of_round(self, number: int, timeout: float = WAIT) -> dict[str, Any]:
        poll(f"round {number} to close", lambda: number in self.results, timeout)
        return self.results[number]


@pytest.fixture
def make_harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**overrides: Any) -> Harness:
        conf = replace(
            ServerConfig(
                data_dir=str(tmp_path),
                num_clients=NUM_CLIENTS,
                rounds=3,
                min_participants=2,
                round_deadline=WAIT,
                model="small",
                run_id="proto-test",
            ),
            **overrides,
        )
        out = io.StringIO()
        fl = FLServer(conf, EventLog(conf.run_id, out))
        server, port = start_grpc_server(fl, "127.0.0.1", 0, None)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        h = Harness(fl, server, port, channel, fl_pb2_grpc.FederatedLearningStub(channel), out)
        made.append(h)
        return h

    yield make
    for h in made:
        h.fl.finish()
        for s in h.streams.values():
            s.cancel()
        for t in h.rounds:
            t.join(timeout=WAIT)
            assert not t.is_alive(), "a round did not close after every stream was cancelled"
        h.channel.close()
        h.server.stop(grace=0).wait()


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    h = make_harness()
    for cid in range(NUM_CLIENTS):
        h.join(cid)
    return h


# ---- helpers for updates -------------------------------------------------------------------


def random_weights(h: Harness, seed: int) -> NDArrays:
    rng = np.random.default_rng(seed)
    return {
        name: rng.standard_normal(shape).astype(np.float32)
        for name, shape, _ in h.fl.layout.entries
    }


def update(cid: int, rnd: int, weights: NDArrays, n: int = 100) -> fl_pb2.Update:
    return fl_pb2.Update(
        client_id=cid, round=rnd, weights=to_proto(weights), num_samples=n, train_seconds=0.01
    )


def numpy_fedavg(pairs: list[tuple[NDArrays, int]]) -> NDArrays:
    """The float64 reference: sum(n_i * w_i) / sum(n_i), rounded once to float32."""
    total = sum(n for _, n in pairs)
    out: NDArrays = {}
    for k in pairs[0][0]:
        acc = np.zeros(pairs[0][0][k].shape, np.float64)
        for w, n in pairs:
            acc += w[k].astype(np.float64) * n
        out[k] = (acc / total).astype(np.float32)
    return out


def assert_weights_close(got: NDArrays, want: NDArrays) -> None:
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-7, err_msg=k)


def broadcast_of_next_round(h: Harness, number: int) -> NDArrays:
    tasks = h.start_round(number)
    assert tasks, "no stream received the next round's task"
    weights = [from_proto(t.weights) for t in tasks.values()]
    for w in weights[1:]:  # everybody gets the same global model
        for k in w:
            np.testing.assert_array_equal(w[k], weights[0][k])
    return weights[0]


# ---- bad updates: refused, the round closes with the rest, the aggregate ignores them ---------


def bad_shape(h: Harness, cid: int) -> fl_pb2.Update:
    w = random_weights(h, 99)
    name = next(iter(w))
    w[name] = np.zeros((2, 2), np.float32)
    return update(cid, 1, w)


def bad_dtype(h: Harness, cid: int) -> fl_pb2.Update:
    u = update(cid, 1, random_weights(h, 99))
    t = u.weights.tensors[0]
    t.dtype = "float64"
    t.data = np.frombuffer(t.data, np.float32).astype(np.float64).tobytes()
    return u


def with_value(value: float) -> Callable[[Harness, int], fl_pb2.Update]:
    def make(h: Harness, cid: int) -> fl_pb2.Update:
        w = random_weights(h, 99)
        w[list(w)[-1]].flat[0] = value
        return update(cid, 1, w)

    return make


def oversized(h: Harness, cid: int) -> fl_pb2.Update:
    u = update(cid, 1, random_weights(h, 99))
    u.weights.tensors.add(name="padding", dtype="float32", shape=[40_000], data=bytes(160_000))
    return u


def samples(n: int) -> Callable[[Harness, int], fl_pb2.Update]:
    return lambda h, cid: update(cid, 1, random_weights(h, 99), n=n)


def train_seconds(value: float) -> Callable[[Harness, int], fl_pb2.Update]:
    def make(h: Harness, cid: int) -> fl_pb2.Update:
        u = update(cid, 1, random_weights(h, 99))
        u.train_seconds = value
        return u

    return make


BAD_UPDATES = [
    ("bad_shape", bad_shape, grpc.StatusCode.INVALID_ARGUMENT),
    ("bad_dtype", bad_dtype, grpc.StatusCode.INVALID_ARGUMENT),
    ("non_finite", with_value(float("nan")), grpc.StatusCode.INVALID_ARGUMENT),
    ("non_finite", with_value(float("inf")), grpc.StatusCode.INVALID_ARGUMENT),
    ("non_finite", with_value(float("-inf")), grpc.StatusCode.INVALID_ARGUMENT),
    ("oversized", oversized, grpc.StatusCode.RESOURCE_EXHAUSTED),
    ("bad_num_samples", samples(0), grpc.StatusCode.INVALID_ARGUMENT),
    ("bad_num_samples", samples(-7), grpc.StatusCode.INVALID_ARGUMENT),
    ("bad_train_seconds", train_seconds(float("nan")), grpc.StatusCode.INVALID_ARGUMENT),
    ("bad_train_seconds", train_seconds(float("inf")), grpc.StatusCode.INVALID_ARGUMENT),
    ("bad_train_seconds", train_seconds(-1.0), grpc.StatusCode.INVALID_ARGUMENT),
]


@pytest.mark.parametrize(
    ("reason", "make_bad", "code"),
    BAD_UPDATES,
    ids=[
        "shape",
        "dtype",
        "nan",
        "inf",
        "-inf",
        "oversized",
        "zero-samples",
        "neg-samples",
        "nan-seconds",
        "inf-seconds",
        "neg-seconds",
    ],
)
def test_invalid_update_is_refused_and_left_out_of_the_aggregate(
    harness: Harness,
    reason: str,
    make_bad: Callable[[Harness, int], fl_pb2.Update],
    code: grpc.StatusCode,
) -> None:
    h = harness
    h.start_round(1)
    w0, w1 = random_weights(h, 0), random_weights(h, 1)
    assert h.submit(update(0, 1, w0, n=100)).accepted
    err = h.refused(make_bad(h, 2))
    assert err.code() == code
    assert reason in (err.details() or "")
    assert (1, 2, "invalid_update", reason) in h.failures()
    # the bad client is done for this round: a corrected update now comes too late
    late = h.refused(update(2, 1, random_weights(h, 2)))
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (1, 2, "protocol", "late_update") in h.failures()
    assert h.submit(update(1, 1, w1, n=300)).accepted

    end = h.end_of_round(1)
    assert end["ok"] is True
    assert end["participants"] == [0, 1]
    assert end["failed"] == [{"client": 2, "class": "invalid_update", "reason": reason}]
    assert_weights_close(broadcast_of_next_round(h, 2), numpy_fedavg([(w0, 100), (w1, 300)]))


def test_transport_limit_refuses_huge_messages_and_the_server_keeps_serving(
    make_harness: Callable[..., Harness],
) -> None:
    """Beyond --max-message-mb gRPC itself refuses the message before the handler sees it, so
    there is no failure event (documented in docs/events.md); the server must carry on."""
    h = make_harness(max_message_mb=1)
    for cid in range(NUM_CLIENTS):
        h.join(cid)
    h.start_round(1)
    huge = update(2, 1, random_weights(h, 2))
    huge.weights.tensors.add(name="pad", dtype="float32", shape=[400_000], data=bytes(1_600_000))
    err = h.refused(huge)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    ws = [random_weights(h, c) for c in range(NUM_CLIENTS)]
    for cid in range(NUM_CLIENTS):
        assert h.submit(update(cid, 1, ws[cid], n=10 * (cid + 1))).accepted
    end = h.end_of_round(1)
    assert end["ok"] and end["participants"] == [0, 1, 2] and end["failed"] == []
    assert h.failures() == []
    expected = numpy_fedavg([(ws[c], 10 * (c + 1)) for c in range(NUM_CLIENTS)])
    assert_weights_close(broadcast_of_next_round(h, 2), expected)


# ---- protocol errors -----------------------------------------------------------------------


@pytest.mark.parametrize("cid", [NUM_CLIENTS, -1, 1_000_000])
def test_join_with_unknown_client_id_is_refused(harness: Harness, cid: int) -> None:
    s = Stream(harness.stub, cid)
    err = s.error()
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"unknown client id {cid}" in (err.details() or "")
    assert (None, cid, "protocol", "unknown_client") in harness.failures()
    assert cid not in harness.fl.sessions


@pytest.mark.parametrize("cid", [NUM_CLIENTS, -1])
def test_submit_with_unknown_client_id_is_refused(harness: Harness, cid: int) -> None:
    h = harness
    h.start_round(1)
    err = h.refused(update(cid, 1, random_weights(h, 0)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert (1, cid, "protocol", "unknown_client") in h.failures()
    for c in range(NUM_CLIENTS):
        assert h.submit(update(c, 1, random_weights(h, c))).accepted
    assert h.end_of_round(1)["participants"] == [0, 1, 2]


def test_bytes_that_are_no_update_are_refused_and_logged(harness: Harness) -> None:
    """The server decodes Submit's bytes itself: gRPC's deserializer would have answered
    INTERNAL before any handler ran, and nothing would have been logged."""
    h = harness
    h.start_round(1)
    raw = h.channel.unary_unary("/ztfl.fl.v1.FederatedLearning/Submit")
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\xff\xff\xff", timeout=WAIT)  # a field tag with a truncated varint
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "undecodable Update" in (info.value.details() or "")
    assert (None, None, "protocol", "undecodable") in h.failures()
    for c in range(NUM_CLIENTS):  # the server keeps serving the round
        assert h.submit(update(c, 1, random_weights(h, c))).accepted
    assert h.end_of_round(1)["participants"] == [0, 1, 2]


def test_duplicate_submission_is_refused_and_the_first_update_counts(harness: Harness) -> None:
    h = harness
    h.start_round(1)
    w = [random_weights(h, c) for c in range(NUM_CLIENTS)]
    assert h.submit(update(0, 1, w[0], n=50)).accepted
    err = h.refused(update(0, 1, random_weights(h, 42), n=5000))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (1, 0, "protocol", "duplicate") in h.failures()
    assert h.submit(update(1, 1, w[1], n=60)).accepted
    assert h.submit(update(2, 1, w[2], n=70)).accepted
    end = h.end_of_round(1)
    assert end["ok"] and end["participants"] == [0, 1, 2] and end["failed"] == []
    expected = numpy_fedavg([(w[0], 50), (w[1], 60), (w[2], 70)])
    assert_weights_close(broadcast_of_next_round(h, 2), expected)
    assert len(h.events("client_update")) == 3


@pytest.mark.parametrize("stale", [0, 2, 7])
def test_update_for_another_round_is_refused(harness: Harness, stale: int) -> None:
    h = harness
    h.start_round(1)
    err = h.refused(update(1, stale, random_weights(h, 0)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"update for round {stale}, current round is 1" in (err.details() or "")
    assert (stale, 1, "protocol", "stale_round") in h.failures()
    for c in range(NUM_CLIENTS):  # the refused client may still deliver its real update
        assert h.submit(update(c, 1, random_weights(h, c))).accepted
    assert h.end_of_round(1)["participants"] == [0, 1, 2]


def test_update_between_rounds_is_refused(harness: Harness) -> None:
    err = harness.refused(update(0, 1, random_weights(harness, 0)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "current round is None" in (err.details() or "")
    assert harness.failures() == [(1, 0, "protocol", "stale_round")]


def test_submit_without_a_join_stream_is_refused(make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    h.join(0)
    h.join(1)
    h.start_round(1)
    err = h.refused(update(2, 1, random_weights(h, 2)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (1, 2, "protocol", "not_joined") in h.failures()
    for c in (0, 1):
        assert h.submit(update(c, 1, random_weights(h, c))).accepted
    end = h.end_of_round(1)
    assert end["ok"] and end["participants"] == [0, 1]


def test_client_joining_mid_round_is_not_selected(make_harness: Callable[..., Harness]) -> None:
    h = make_harness()
    h.join(0)
    h.join(1)
    h.start_round(1)
    h.join(2)
    err = h.refused(update(2, 1, random_weights(h, 2)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (1, 2, "protocol", "not_selected") in h.failures()
    for c in (0, 1):
        assert h.submit(update(c, 1, random_weights(h, c))).accepted
    assert h.end_of_round(1)["participants"] == [0, 1]
    assert set(h.start_round(2)) == {0, 1, 2}, "the late joiner takes part from the next round"


# ---- lost clients --------------------------------------------------------------------------


def test_client_disconnecting_mid_round_is_dropped_and_the_round_closes(harness: Harness) -> None:
    h = harness
    h.start_round(1)
    w0, w1 = random_weights(h, 0), random_weights(h, 1)
    assert h.submit(update(0, 1, w0, n=100)).accepted
    h.streams[2].cancel()
    poll(
        "the disconnect failure event",
        lambda: (1, 2, "disconnect", "stream_closed") in h.failures(),
        WAIT,
    )
    assert any(e["client"] == 2 for e in h.events("client_left"))
    assert h.submit(update(1, 1, w1, n=200)).accepted
    end = h.end_of_round(1)  # closes on the last valid update, not at the 20 s deadline
    assert end["ok"] and end["participants"] == [0, 1]
    assert end["failed"] == [{"client": 2, "class": "disconnect", "reason": "stream_closed"}]
    assert end["duration"] < WAIT / 2
    # a dropped client cannot sneak its update in afterwards
    err = h.refused(update(2, 1, random_weights(h, 2)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (1, 2, "protocol", "not_joined") in h.failures()
    assert_weights_close(broadcast_of_next_round(h, 2), numpy_fedavg([(w0, 100), (w1, 200)]))


def test_silent_client_times_out_at_the_deadline(make_harness: Callable[..., Harness]) -> None:
    h = make_harness(round_deadline=1.0)
    for cid in range(NUM_CLIENTS):
        h.join(cid)
    h.start_round(1)
    for c in (0, 1):
        assert h.submit(update(c, 1, random_weights(h, c))).accepted
    end = h.end_of_round(1)
    assert end["ok"] and end["participants"] == [0, 1]
    assert end["failed"] == [{"client": 2, "class": "timeout", "reason": "deadline"}]
    assert 1.0 <= end["duration"] < WAIT
    assert (1, 2, "timeout", "deadline") in h.failures()
    late = h.refused(update(2, 1, random_weights(h, 2)))
    assert late.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (1, 2, "protocol", "stale_round") in h.failures()


def test_round_with_too_few_participants_fails_and_keeps_the_model(harness: Harness) -> None:
    h = harness
    before = {k: v.copy() for k, v in h.fl.weights.items()}
    h.start_round(1)
    assert h.submit(update(0, 1, random_weights(h, 0))).accepted
    h.refused(bad_shape(h, 1))
    h.streams[2].cancel()
    end = h.end_of_round(1)
    assert end["ok"] is False and end["participants"] == [0]
    assert end["failed"] == [
        {"client": 1, "class": "invalid_update", "reason": "bad_shape"},
        {"client": 2, "class": "disconnect", "reason": "stream_closed"},
    ]
    broadcast = broadcast_of_next_round(h, 2)
    for k, v in before.items():
        np.testing.assert_array_equal(broadcast[k], v)


def test_every_event_the_server_wrote_is_valid(harness: Harness) -> None:
    """After a round full of abuse the log still parses under the schema (no half lines)."""
    h = harness
    h.start_round(1)
    h.refused(update(9, 1, random_weights(h, 0)))
    h.refused(with_value(float("nan"))(h, 0))
    h.refused(update(1, 5, random_weights(h, 1)))
    assert h.submit(update(1, 1, random_weights(h, 1))).accepted
    h.refused(update(1, 1, random_weights(h, 1)))
    assert h.submit(update(2, 1, random_weights(h, 2))).accepted
    end = h.end_of_round(1)
    assert end["participants"] == [1, 2]
    kinds = [e["event"] for e in h.events()]
    assert kinds.count("client_joined") == 3 and kinds.count("client_update") == 2
    assert kinds.count("failure") == 4 and kinds[-1] == "round_end"
    updates = h.events("client_update")
    assert all(
        u["bytes_down"] > 0 and u["bytes_up"] > 0 and u["num_samples"] == 100 for u in updates
    )


def test_aggregate_does_not_depend_on_arrival_order(make_harness: Callable[..., Harness]) -> None:
    """Same accepted updates, opposite arrival order: bit-identical global model, so two runs
    with the same seed do not drift apart because clients finished in a different order."""
    broadcasts = []
    for order in ([0, 1, 2], [2, 1, 0]):
        h = make_harness()
        for cid in range(NUM_CLIENTS):
            h.join(cid)
        h.start_round(1)
        for cid in order:
            assert h.submit(update(cid, 1, random_weights(h, cid), n=97 + 31 * cid)).accepted
        assert h.end_of_round(1)["ok"]
        broadcasts.append(broadcast_of_next_round(h, 2))
    for k in broadcasts[0]:
        assert broadcasts[0][k].tobytes() == broadcasts[1][k].tobytes(), k


def test_an_absent_client_is_left_out_of_its_round_not_failed(
    make_harness: Callable[..., Harness],
) -> None:
    """An availability trace (``--absent 1:2``): client 2 is away from round 1, so the server
    does not select it (no TRAIN task, ``round_start.absent``), the round closes with the
    others and no failure; an update it sends anyway is refused as not selected; in round 2 it
    is selected again."""
    h = make_harness(absent=((1, 2),))
    for cid in range(NUM_CLIENTS):
        h.join(cid)
    t = threading.Thread(
        target=lambda: h.results.__setitem__(1, h.fl.run_round(1)), daemon=True
    )
    t.start()
    h.rounds.append(t)
    for cid in (0, 1):
        task = h.streams[cid].next()
        assert task.kind == fl_pb2.Task.TRAIN and task.round == 1
    start = h.events("round_start")[0]
    assert (start["selected"], start["absent"]) == ([0, 1], [2])
    err = h.refused(update(2, 1, random_weights(h, 2)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert h.submit(update(0, 1, random_weights(h, 0))).accepted
    assert h.submit(update(1, 1, random_weights(h, 1))).accepted
    end = h.end_of_round(1)
    assert (end["ok"], end["participants"], end["failed"]) == (True, [0, 1], [])
    assert [f for f in h.failures() if f[2] != "protocol"] == []  # the refusal: not_selected
    with pytest.raises(queue.Empty):  # and it got no task meanwhile
        h.streams[2].items.get(timeout=0.2)
    tasks = h.start_round(2)
    assert sorted(tasks) == [0, 1, 2]
    assert "absent" not in h.events("round_start")[1]
