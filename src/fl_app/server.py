"""The FL server: gRPC service plus the coordinator that runs synchronous FedAvg rounds.

Clients open a ``Join`` stream and receive tasks; they answer each TRAIN task with ``Submit``.
A round ends when every selected client has either delivered a valid update or failed
(disconnected, timed out at the deadline, sent an invalid update); it succeeds when at least
``min_participants`` valid updates arrived, and the global model becomes their FedAvg.
Nothing a client sends can crash the server: bad input is refused with a gRPC status and
logged as a ``failure`` event with its class.

Run: ``python -m fl_app.server --data-dir DIR --clients 5 --rounds 10 [--tls-cert ...]``.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import torch

from fl_app import config as cfg
from fl_app.data import DataError, load_mnist
from fl_app.events import EventLog
from fl_app.fedavg import fedavg
from fl_app.models import build_model, num_parameters
from fl_app.partition import PartitionError, parse_split, partition, summary
from fl_app.proto import fl_pb2, fl_pb2_grpc
from fl_app.tensors import Layout, NDArrays, UpdateError, from_proto, state_to_arrays, to_proto
from fl_app.train import evaluate, load_arrays

POLL = 0.2  # seconds between liveness checks of a Join stream waiting for its next task
SERVICE = "ztfl.fl.v1.FederatedLearning"


@dataclass
class Session:
    """One client's live Join stream."""

    client: int
    peer: str
    identity: str | None
    tasks: queue.Queue[fl_pb2.Task] = field(default_factory=queue.Queue)
    closed: threading.Event = field(default_factory=threading.Event)


@dataclass
class Round:
    number: int
    selected: set[int]
    started: float
    bytes_down: dict[int, int] = field(default_factory=dict)
    updates: dict[int, tuple[NDArrays, int, dict[str, Any]]] = field(default_factory=dict)
    failed: dict[int, tuple[str, str]] = field(default_factory=dict)

    def resolved(self) -> bool:
        return self.selected <= set(self.updates) | set(self.failed)


def peer_identity(context: grpc.ServicerContext) -> str | None:
    """The client's SPIFFE id from its verified certificate, or None without mTLS."""
    auth = context.auth_context()
    for key in ("peer_spiffe_id", "x509_subject_alternative_name"):
        for value in auth.get(key, []):
            text = value.decode() if isinstance(value, bytes) else str(value)
            if text.startswith("spiffe://"):
                return text
    return None


class FLServer(fl_pb2_grpc.FederatedLearningServicer):  # type: ignore[misc]
    def __init__(self, conf: cfg.ServerConfig, log: EventLog) -> None:
        self.conf = conf
        self.log = log
        self.lock = threading.Condition()
        self.sessions: dict[int, Session] = {}
        self.round: Round | None = None
        self.finished = False
        self.spec = fl_pb2.RunSpec(
            run_id=conf.run_id,
            model=conf.model,
            split=conf.split,
            num_clients=conf.num_clients,
            seed=conf.seed,
            min_samples=conf.min_samples,
        )
        self.train_conf = fl_pb2.TrainConfig(
            local_epochs=conf.local_epochs,
            batch_size=conf.batch_size,
            lr=conf.lr,
            momentum=conf.momentum,
            max_steps=conf.max_steps,
        )
        self.model = build_model(conf.model, conf.seed)
        self.weights = state_to_arrays(self.model.state_dict())
        self.layout = Layout.of(self.weights)
        # An update may not exceed the model's exact size plus framing slack.
        self.max_update_bytes = self.layout.nbytes + 64 * 1024

    # ---- events -------------------------------------------------------------------------
    def fail(self, rnd: int | None, client: int | None, cls: str, reason: str, detail: str) -> None:
        self.log.emit(
            "failure", round=rnd, client=client, **{"class": cls}, reason=reason, detail=detail
        )

    # ---- gRPC handlers ------------------------------------------------------------------
    def Join(
        self, request: fl_pb2.JoinRequest, context: grpc.ServicerContext
    ) -> Iterator[fl_pb2.Task]:
        cid = request.client_id
        identity = peer_identity(context)
        if not 0 <= cid < self.conf.num_clients:
            self.fail(
                None,
                cid,
                "protocol",
                "unknown_client",
                f"client id {cid} not in [0, {self.conf.num_clients})",
            )
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown client id {cid}")
        if self.conf.allowed_ids and identity not in self.conf.allowed_ids:
            self.fail(
                None,
                cid,
                "mtls",
                "identity_not_allowed",
                f"peer identity {identity!r} is not on the allow-list",
            )
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "identity not allowed")
        session = Session(client=cid, peer=context.peer(), identity=identity)
        with self.lock:
            if self.finished:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "run is over")
            old = self.sessions.get(cid)
            if old is not None:  # a restarted client replaces its stale stream
                old.closed.set()
            self.sessions[cid] = session
            self.lock.notify_all()
        context.add_callback(lambda: self._on_stream_end(session))
        self.log.emit("client_joined", client=cid, peer=session.peer, identity=identity)
        yield fl_pb2.Task(kind=fl_pb2.Task.SETUP, spec=self.spec)
        while not session.closed.is_set() and context.is_active():
            try:
                task = session.tasks.get(timeout=POLL)
            except queue.Empty:
                continue
            yield task
            if task.kind == fl_pb2.Task.FINISH:
                return

    def _on_stream_end(self, session: Session) -> None:
        with self.lock:
            session.closed.set()
            if self.sessions.get(session.client) is not session:
                return  # replaced by a newer stream of the same client
            del self.sessions[session.client]
            rnd = self.round
            pending = (
                rnd is not None
                and session.client in rnd.selected
                and session.client not in rnd.updates
                and session.client not in rnd.failed
            )
            if pending and rnd is not None:
                rnd.failed[session.client] = ("disconnect", "stream_closed")
            self.lock.notify_all()
        if self.finished:
            return
        self.log.emit("client_left", client=session.client, reason="stream_closed")
        if pending and rnd is not None:
            self.fail(
                rnd.number,
                session.client,
                "disconnect",
                "stream_closed",
                "the client's Join stream ended before it submitted its update",
            )

    def submit_bytes(self, data: bytes, context: grpc.ServicerContext) -> fl_pb2.Ack:
        """Submit as it arrives: bytes the server decodes itself, so bytes that are no Update
        are a refusal it logs (gRPC's own deserializer would answer INTERNAL before any
        handler ran, and nothing would be logged)."""
        try:
            request = fl_pb2.Update.FromString(data)
        except Exception as exc:  # protobuf's DecodeError (and friends): not an Update
            self.fail(None, None, "protocol", "undecodable", f"{len(data)} bytes: {exc}")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable Update: {exc}")
        return self.Submit(request, context)

    def Submit(self, request: fl_pb2.Update, context: grpc.ServicerContext) -> fl_pb2.Ack:
        cid, rnd_no = request.client_id, request.round
        with self.lock:
            rnd = self.round
            session = self.sessions.get(cid)
        refusal = self._check_submission(request, rnd, session, context)
        if refusal is not None:
            code, cls, reason, detail = refusal
            self.fail(rnd_no, cid, cls, reason, detail)
            if rnd is not None and cls == "invalid_update":
                with self.lock:
                    if rnd is self.round and cid in rnd.selected and cid not in rnd.updates:
                        rnd.failed.setdefault(cid, (cls, reason))
                        self.lock.notify_all()
            context.abort(code, f"{reason}: {detail}")
        assert rnd is not None
        try:
            weights = from_proto(request.weights, self.layout)
        except UpdateError as exc:
            self.fail(rnd_no, cid, "invalid_update", exc.reason, str(exc))
            with self.lock:
                if rnd is self.round and cid not in rnd.updates:
                    rnd.failed.setdefault(cid, ("invalid_update", exc.reason))
                    self.lock.notify_all()
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        meta = {
            "bytes_up": request.ByteSize(),
            "train_seconds": request.train_seconds,
            "identity": peer_identity(context),
        }
        with self.lock:
            if rnd is not self.round or cid in rnd.failed or cid in rnd.updates:
                late = True
            else:
                rnd.updates[cid] = (weights, int(request.num_samples), meta)
                late = False
                self.lock.notify_all()
        if late:
            self.fail(
                rnd_no,
                cid,
                "protocol",
                "late_update",
                "the round was already closed for this client",
            )
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "round closed for this client")
        self.log.emit(
            "client_update",
            round=rnd_no,
            client=cid,
            bytes_down=rnd.bytes_down.get(cid, 0),
            bytes_up=meta["bytes_up"],
            train_seconds=request.train_seconds,
            num_samples=int(request.num_samples),
            identity=meta["identity"],
        )
        return fl_pb2.Ack(accepted=True)

    def _check_submission(
        self,
        req: fl_pb2.Update,
        rnd: Round | None,
        session: Session | None,
        context: grpc.ServicerContext,
    ) -> tuple[grpc.StatusCode, str, str, str] | None:
        cid = req.client_id
        if not 0 <= cid < self.conf.num_clients:
            return (
                grpc.StatusCode.NOT_FOUND,
                "protocol",
                "unknown_client",
                f"client id {cid} is not part of this run",
            )
        if self.conf.allowed_ids and peer_identity(context) not in self.conf.allowed_ids:
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                "mtls",
                "identity_not_allowed",
                "peer identity is not on the allow-list",
            )
        if session is None:
            return (
                grpc.StatusCode.FAILED_PRECONDITION,
                "protocol",
                "not_joined",
                f"client {cid} has no open Join stream",
            )
        if rnd is None or req.round != rnd.number:
            current = rnd.number if rnd else None
            return (
                grpc.StatusCode.FAILED_PRECONDITION,
                "protocol",
                "stale_round",
                f"update for round {req.round}, current round is {current}",
            )
        if cid not in rnd.selected:
            return (
                grpc.StatusCode.FAILED_PRECONDITION,
                "protocol",
                "not_selected",
                f"client {cid} was not selected for round {rnd.number}",
            )
        if cid in rnd.updates:
            return (
                grpc.StatusCode.ALREADY_EXISTS,
                "protocol",
                "duplicate",
                f"client {cid} already submitted round {rnd.number}",
            )
        if req.ByteSize() > self.max_update_bytes:
            return (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "invalid_update",
                "oversized",
                f"{req.ByteSize()} bytes, limit {self.max_update_bytes}",
            )
        if req.num_samples <= 0:
            return (
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_update",
                "bad_num_samples",
                f"num_samples {req.num_samples} must be > 0",
            )
        if not (math.isfinite(req.train_seconds) and req.train_seconds >= 0):
            # NaN/Inf would also make the client_update event unwritable (strict JSON).
            return (
                grpc.StatusCode.INVALID_ARGUMENT,
                "invalid_update",
                "bad_train_seconds",
                f"train_seconds {req.train_seconds} must be a finite number >= 0",
            )
        return None

    # ---- coordinator --------------------------------------------------------------------
    def wait_for_clients(self, needed: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.sessions) < needed and time.monotonic() < deadline:
                self.lock.wait(deadline - time.monotonic())
            return len(self.sessions)

    def run_round(self, number: int) -> dict[str, Any]:
        conf = self.conf
        if self.wait_for_clients(conf.min_required, conf.round_deadline) < conf.min_required:
            pass  # the round proceeds and fails with too few participants, visibly
        task = fl_pb2.Task(
            kind=fl_pb2.Task.TRAIN,
            round=number,
            weights=to_proto(self.weights),
            train=self.train_conf,
        )
        size = task.ByteSize()
        with self.lock:
            selected = sorted(self.sessions)
            rnd = Round(number=number, selected=set(selected), started=self.log.now())
            self.round = rnd
        self.log.emit("round_start", round=number, selected=selected)
        injected = 0.0
        if conf.inject_delay_ms > 0:
            # The known effect (--inject-delay-ms): a wait inside the round, before any task
            # goes out, so it adds exactly its length to the round and uses no CPU.
            t0 = time.perf_counter()
            time.sleep(conf.inject_delay_ms / 1000)
            injected = time.perf_counter() - t0
        for cid in selected:
            with self.lock:
                session = self.sessions.get(cid)
            if session is not None:
                rnd.bytes_down[cid] = size
                session.tasks.put(task)
        deadline = time.monotonic() + conf.round_deadline
        with self.lock:
            while not rnd.resolved() and time.monotonic() < deadline:
                self.lock.wait(max(0.0, deadline - time.monotonic()))
            timed_out = sorted(rnd.selected - set(rnd.updates) - set(rnd.failed))
            for cid in timed_out:
                rnd.failed[cid] = ("timeout", "deadline")
            self.round = None  # late submissions are refused from here on
            updates = dict(rnd.updates)
        for cid in timed_out:
            self.fail(
                number,
                cid,
                "timeout",
                "deadline",
                f"no update within the {conf.round_deadline:g} s round deadline",
            )
        ok = len(updates) >= conf.min_required
        agg_start = time.perf_counter()
        if ok:
            # In client-id order, not arrival order: float rounding then does not depend on
            # which client finished first, so runs with the same seed stay bit-identical.
            self.weights = fedavg([(w, n) for _, (w, n, _) in sorted(updates.items())])
        agg_seconds = time.perf_counter() - agg_start
        return self.log.emit(
            "round_end",
            round=number,
            ok=ok,
            participants=sorted(updates),
            failed=[
                {"client": c, "class": k, "reason": r} for c, (k, r) in sorted(rnd.failed.items())
            ],
            duration=round(self.log.now() - rnd.started, 6),
            aggregation_seconds=round(agg_seconds, 6),
            injected_delay_seconds=round(injected, 6),
        )

    def finish(self, timeout: float = 2.0) -> None:
        """Send FINISH to every client and wait (up to ``timeout``) until their streams have
        closed, so stopping the server cancels nothing that was still being delivered."""
        with self.lock:
            self.finished = True
            sessions = list(self.sessions.values())
        for s in sessions:
            s.tasks.put(fl_pb2.Task(kind=fl_pb2.Task.FINISH))
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.sessions and time.monotonic() < deadline:
                self.lock.wait(deadline - time.monotonic())


def start_grpc_server(
    fl: FLServer, host: str, port: int, tls: tuple[bytes, bytes, bytes] | None
) -> tuple[grpc.Server, int]:
    """Serve ``fl`` on ``host:port`` (0: any free port); return the started server and its port."""
    conf = fl.conf
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2 * conf.num_clients + 8),
        options=cfg.grpc_options(conf.max_message_mb),
    )
    # fl_pb2_grpc.add_FederatedLearningServicer_to_server, but Submit takes its bytes as they
    # came (FLServer.submit_bytes decodes them, so an undecodable one is a logged refusal)
    handlers = {
        "Join": grpc.unary_stream_rpc_method_handler(
            fl.Join,
            request_deserializer=fl_pb2.JoinRequest.FromString,
            response_serializer=fl_pb2.Task.SerializeToString,
        ),
        "Submit": grpc.unary_unary_rpc_method_handler(
            fl.submit_bytes, response_serializer=fl_pb2.Ack.SerializeToString
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    if tls is None:
        bound = server.add_insecure_port(f"{host}:{port}")
    else:
        cert, key, ca = tls
        creds = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=True
        )
        bound = server.add_secure_port(f"{host}:{port}", creds)
    server.start()
    return server, bound


def _wait_for_file(path: str, timeout: float, poll: float = 0.05) -> bool:
    """The harness releases a held run by creating ``path`` (after its proofs passed, and with
    ``--hold-rounds`` before each round)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def run(
    conf: cfg.ServerConfig,
    log: EventLog,
    host: str,
    port: int,
    tls: tuple[bytes, bytes, bytes] | None,
) -> bool:
    """Run a whole FL run; return True when every round succeeded."""
    torch.set_num_threads(1)
    data = load_mnist(conf.data_dir)
    split = parse_split(conf.split)
    parts = partition(data.y_train, conf.num_clients, split, conf.seed, conf.min_samples)
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    fl = FLServer(conf, log)
    log.emit(
        "run_start",
        config=conf.to_dict(),
        partition=summary(parts, data.y_train),
        model_params=num_parameters(fl.model),
        update_bytes=fl.layout.nbytes,
        data_source=data.source,
    )
    server, bound = start_grpc_server(fl, host, port, tls)
    log.emit("server_ready", port=bound, tls=tls is not None)
    completed, all_ok, reason, accuracy = 0, True, "completed", None
    target_hit = False
    first_round_t: float | None = None
    held = 0.0  # time spent waiting for round releases after round 1 started: not the run's
    try:
        joined = fl.wait_for_clients(conf.num_clients, conf.join_timeout)
        if conf.hold_file and not _wait_for_file(conf.hold_file, conf.join_timeout):
            all_ok, reason = False, f"not released: {conf.hold_file} did not appear"
        elif joined < conf.min_required:
            all_ok, reason = False, f"only {joined} of {conf.num_clients} clients joined"
        else:
            for r in range(1, conf.rounds + 1):
                if conf.hold_rounds:
                    log.emit("round_hold", round=r)
                    t_hold = log.now()
                    # 10 ms polls: the release of the next round waits on this, not a race
                    if not _wait_for_file(f"{conf.hold_file}.{r}", conf.join_timeout, 0.01):
                        all_ok = False
                        reason = f"not released: {conf.hold_file}.{r} did not appear"
                        break
                    if first_round_t is not None:
                        held += log.now() - t_hold
                if first_round_t is None:
                    first_round_t = log.now()
                end = fl.run_round(r)
                completed += 1
                all_ok &= bool(end["ok"])
                if r % conf.eval_every == 0 or r == conf.rounds:
                    t0 = time.perf_counter()
                    load_arrays(fl.model, fl.weights)
                    accuracy, loss = evaluate(fl.model, x_test, y_test)
                    log.emit(
                        "eval",
                        round=r,
                        accuracy=round(accuracy, 6),
                        loss=round(loss, 6),
                        seconds=round(time.perf_counter() - t0, 6),
                    )
                    if not target_hit and accuracy >= conf.target_accuracy:
                        target_hit = True
                        log.emit(
                            "target_reached",
                            round=r,
                            accuracy=round(accuracy, 6),
                            target=conf.target_accuracy,
                            tta_seconds=round(log.now() - first_round_t - held, 6),
                            held_seconds=round(held, 6),
                        )
            if not all_ok and reason == "completed":
                reason = "some rounds had too few participants"
    finally:
        fl.finish()
        # the streams are closed (finish waited for them): a short grace for the last acks
        server.stop(grace=0.5).wait()
    log.emit(
        "run_end", ok=all_ok, rounds_completed=completed, reason=reason, final_accuracy=accuracy
    )
    return all_ok


def main(argv: list[str] | None = None) -> int:
    p = cfg.Parser(prog="fl_app.server", description="FedAvg server (events on stdout).")
    cfg.add_run_args(p)
    cfg.add_tls_args(p)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--events", type=Path, help="also append events to this file")
    ns = p.parse_args(argv)
    try:
        conf = cfg.config_from_args(ns)
        tls = cfg.tls_files(ns)
    except cfg.ConfigError as exc:
        p.error(str(exc))
    log = EventLog(conf.run_id, sys.stdout, ns.events)
    try:
        return 0 if run(conf, log, ns.host, ns.port, tls) else 1
    except (DataError, PartitionError) as exc:
        sys.stderr.write(f"fl_app.server: error: {exc}\n")
        return 2
    finally:
        log.close()


if __name__ == "__main__":
    cfg.exit_now(main())
