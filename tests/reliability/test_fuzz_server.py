"""Fuzz the FL server's gRPC handlers with hypothesis, against a real in-process server.

One server (``tests/fl_app/test_server_protocol.py``'s harness) serves every example; each
example is one round: for every client hypothesis draws a sequence of hostile or broken
messages (raw random bytes on the wire, random and mutated valid updates: wrong shapes, dtypes,
names, NaN/Inf, oversized, bad sample counts and timings, unknown ids, stale and future rounds,
replays) and how the client ends its round (a valid update, or one the server must refuse).
Invariants:

* the server never crashes: every call answers with ``Ack(accepted=True)`` or a *deliberate*
  gRPC status (never UNKNOWN/INTERNAL/UNAVAILABLE), and the next round is served;
* every refusal is logged as a ``failure`` event of a known class;
* the round closes without waiting for its deadline (every selected client resolved);
* the new global model is exactly the FedAvg of the accepted updates (float64 reference), and
  unchanged when too few were accepted.

CI runs 40 examples. A campaign runs more (``ZTFL_FUZZ_EXAMPLES``) and, with
``ZTFL_FUZZ_REPORT=FILE``, writes the count of messages sent and how the server answered
(``benchmarks/fuzz_server.py`` does both and prints the figures).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from test_server_protocol import (  # noqa: F401 - make_harness is a fixture
    WAIT,
    Harness,
    make_harness,
    numpy_fedavg,
    random_weights,
    update,
)

from fl_app.events import FAILURE_CLASSES
from fl_app.proto import fl_pb2
from fl_app.tensors import to_proto

ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
}
SUBMIT = "/ztfl.fl.v1.FederatedLearning/Submit"

# What a client may send before it ends its round (none of these resolves it on the server;
# "garbage" decodes as an update only by chance, see _send).
NOISE = st.sampled_from(
    ["garbage", "random_proto", "unknown_id", "negative_id", "stale_round", "future_round"]
)
# How it ends the round: one valid update, or one the server must refuse as invalid_update.
END = st.sampled_from(
    [
        "valid", "valid", "valid",  # weighted: most rounds should aggregate something
        "nan", "inf", "short_tensor", "long_tensor", "wrong_dtype", "int_dtype", "renamed",
        "missing_tensor", "extra_tensor", "oversized", "zero_samples", "negative_samples",
        "nan_seconds", "negative_seconds", "bad_bytes",
    ]
)
# What it may send after that (the round is resolved for it: all must be refused).
AFTER = st.sampled_from(["replay", "valid_again", "none"])


def _mutate(h: Harness, kind: str, cid: int, rnd: int, seed: int) -> fl_pb2.Update:
    w = random_weights(h, seed)
    names = list(w)
    n = 1 + seed % 500
    if kind == "nan":
        w[names[0]].flat[seed % w[names[0]].size] = np.nan
    elif kind == "inf":
        w[names[-1]].flat[0] = -np.inf
    elif kind == "short_tensor":
        w[names[0]] = w[names[0]].reshape(-1)[:-1]
    elif kind == "long_tensor":
        w[names[0]] = np.concatenate([w[names[0]].reshape(-1), np.zeros(3, np.float32)])
    elif kind == "renamed":
        w["not." + names[0]] = w.pop(names[0])
    elif kind == "missing_tensor":
        del w[names[-1]]
    elif kind == "extra_tensor":
        w["extra.bias"] = np.zeros(4, np.float32)
    u = update(cid, rnd, w, n)
    if kind == "oversized":
        u.weights.tensors[0].data = bytes(h.fl.max_update_bytes + 1)
    elif kind in ("wrong_dtype", "int_dtype"):
        # to_proto always writes float32: re-encode one tensor by hand with the wrong dtype.
        t = u.weights.tensors[0 if kind == "wrong_dtype" else -1]
        src = np.frombuffer(t.data, np.float32)
        dtype, arr = ("float64", src.astype(np.float64)) if kind == "wrong_dtype" else (
            "int32", src.astype(np.int32))
        t.dtype, t.data = dtype, arr.tobytes()
    elif kind == "bad_bytes":
        u.weights.tensors[0].data = u.weights.tensors[0].data[:-3]
    elif kind == "zero_samples":
        u.num_samples = 0
    elif kind == "negative_samples":
        u.num_samples = -n
    elif kind == "nan_seconds":
        u.train_seconds = float("nan")
    elif kind == "negative_seconds":
        u.train_seconds = -1.0
    return u


EXAMPLES = int(os.environ.get("ZTFL_FUZZ_EXAMPLES", "40"))
SENT: Counter[str] = Counter()  # answers of this process's campaign, by kind


def _send(h: Harness, raw: Callable[..., Any], msg: fl_pb2.Update | bytes) -> str:
    """Send one Submit: "accepted" or "refused" (a deliberate status, logged as a failure: bytes
    that are no Update too, decoded by the server itself). Any other answer fails the test."""
    try:
        if isinstance(msg, bytes):
            ack = fl_pb2.Ack.FromString(raw(msg, timeout=WAIT))
        else:
            ack = h.submit(msg)
    except grpc.RpcError as exc:
        assert exc.code() in ALLOWED, f"server answered {exc.code()}: {exc.details()}"
        SENT["refused"] += 1
        SENT["undecodable"] += isinstance(msg, bytes) and _decode(msg) is None
        return "refused"
    assert ack.accepted
    SENT["accepted"] += 1
    return "accepted"


def _decode(blob: bytes) -> fl_pb2.Update | None:
    try:
        return fl_pb2.Update.FromString(blob)
    except Exception:  # protobuf's DecodeError (and friends): not an Update
        return None


@settings(
    deadline=None,
    max_examples=EXAMPLES,
    # One server serves every example, so an example cannot be replayed in isolation: no
    # shrinking (the failing example's draws are printed in full instead).
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
@given(data=st.data())
def test_fuzzed_rounds_aggregate_only_accepted_updates(
    make_harness: Callable[..., Harness],  # noqa: F811 - the imported fixture
    data: st.DataObject,
) -> None:
    h = _shared(make_harness)
    raw = h.channel.unary_unary(SUBMIT)  # bytes in, bytes out: garbage goes on the wire as-is
    # Every draw first: hypothesis may end an example at any draw (its data ran out, a
    # StopTest), and a round it left open on the shared server would break every later one.
    plan = {cid: _plan(data, cid) for cid in sorted(h.streams)}
    number = max(h.results, default=0) + 1
    before = {k: v.copy() for k, v in h.fl.weights.items()}
    n_fail_before = len(h.events("failure"))
    t0 = time.monotonic()
    tasks = h.start_round(number)
    assert set(tasks) == set(h.streams), "every joined client gets the TRAIN task"
    accepted: dict[int, fl_pb2.Update] = {}
    resolved: set[int] = set()  # clients whose round is decided (accepted or refused as invalid)
    logged = 0  # refusals the server must have logged as failure events

    def poisons(u: fl_pb2.Update | None) -> None:
        """A refused message that names a selected, undecided client and this round resolves
        that client as failed (invalid_update), exactly as a broken real client would."""
        if u is not None and u.client_id in tasks and u.round == number:
            resolved.add(u.client_id)

    for cid in sorted(tasks):
        seed, noises, end, after = plan[cid]
        for noise, drawn in noises:
            if noise == "garbage":
                assert isinstance(drawn, bytes)
                outcome = _send(h, raw, drawn)
                if outcome == "refused":
                    poisons(_decode(drawn))
            else:
                u = update(cid, number, random_weights(h, seed))
                if noise == "random_proto":
                    assert isinstance(drawn, fl_pb2.Update)
                    u = drawn
                elif noise == "unknown_id":
                    u.client_id = 3 + seed % 1000
                elif noise == "negative_id":
                    u.client_id = -1 - seed % 1000
                elif noise == "stale_round":
                    u.round = number - 1 - seed % 3
                elif noise == "future_round":
                    u.round = number + 1 + seed % 3
                outcome = _send(h, raw, u)
                if outcome == "refused":
                    poisons(u)
            assert outcome != "accepted", f"noise {noise!r} was accepted"
            logged += outcome == "refused"
        msg = _mutate(h, end, cid, number, seed)
        outcome = _send(h, raw, msg)
        if outcome == "accepted":
            assert end == "valid" and cid not in resolved, f"{end} update was accepted"
            accepted[cid] = msg
        else:
            assert end != "valid" or cid in resolved, "a valid update was refused"
            logged += 1
        resolved.add(cid)
        if after != "none":
            again = msg if after == "replay" else _mutate(h, "valid", cid, number, seed + 1)
            assert _send(h, raw, again) == "refused", "a second update for a round was accepted"
            logged += 1
    note(f"round {number}: {len(accepted)} accepted, {logged} refusals logged")
    SENT["rounds"] += 1
    end_ev = h.end_of_round(number)
    assert time.monotonic() - t0 < WAIT / 2, "the round waited for its deadline"
    assert not any(f["reason"] == "deadline" for f in end_ev["failed"]), end_ev
    assert sorted(end_ev["participants"]) == sorted(accepted)
    new_failures = h.events("failure")[n_fail_before:]
    assert len(new_failures) == logged, "every refusal is logged once"
    assert {f["class"] for f in new_failures} <= set(FAILURE_CLASSES)
    if len(accepted) >= h.fl.conf.min_required:
        assert end_ev["ok"]
        ref = numpy_fedavg(
            [(_weights(accepted[c]), int(accepted[c].num_samples)) for c in sorted(accepted)]
        )
        for k, v in ref.items():
            np.testing.assert_allclose(h.fl.weights[k], v, rtol=1e-6, atol=1e-6, err_msg=k)
    else:
        assert not end_ev["ok"]
        for k, v in before.items():
            np.testing.assert_array_equal(h.fl.weights[k], v, err_msg=k)


Plan = tuple[int, list[tuple[str, bytes | fl_pb2.Update | None]], str, str]


def _plan(data: st.DataObject, cid: int) -> Plan:
    """One client's round, drawn whole: its seed, the noise it sends first (with the bytes
    or message a noise needs), how it ends the round, and what it sends after."""
    seed = data.draw(st.integers(0, 2**31 - 1), label=f"seed{cid}")
    noises: list[tuple[str, bytes | fl_pb2.Update | None]] = []
    for noise in data.draw(st.lists(NOISE, max_size=3), label=f"noise{cid}"):
        drawn: bytes | fl_pb2.Update | None = None
        if noise == "garbage":
            drawn = data.draw(st.binary(max_size=256), label="garbage")
        elif noise == "random_proto":
            drawn = fl_pb2.Update(
                client_id=data.draw(st.integers(-(2**31), 2**31 - 1)),
                round=data.draw(st.integers(-(2**31), 2**31 - 1)),
                num_samples=data.draw(st.integers(-(2**31), 2**31 - 1)),
                train_seconds=data.draw(st.floats(allow_nan=True)),
                weights=to_proto({"w": np.zeros(2, np.float32)}),
            )
        noises.append((noise, drawn))
    end = data.draw(END, label=f"end{cid}")
    return seed, noises, end, data.draw(AFTER, label=f"after{cid}")


def _weights(u: fl_pb2.Update) -> dict[str, np.ndarray]:
    from fl_app.tensors import from_proto

    return from_proto(u.weights)


_HARNESS: dict[int, Harness] = {}


def _shared(make: Callable[..., Harness]) -> Harness:
    """One server for every example of the test (rounds go on: 1, 2, 3 ...)."""
    key = id(make)
    if key not in _HARNESS:
        _HARNESS.clear()
        h = make(rounds=10_000)
        for cid in range(3):
            h.join(cid)
        _HARNESS[key] = h
    return _HARNESS[key]


@pytest.fixture(scope="module", autouse=True)
def campaign_report() -> Iterator[None]:
    """With ``ZTFL_FUZZ_REPORT``: the campaign's counts, written after the module's tests."""
    SENT.clear()
    yield
    path = os.environ.get("ZTFL_FUZZ_REPORT")
    if path:
        with open(path, "w") as fh:
            json.dump({"examples": EXAMPLES, **SENT}, fh, indent=1)
