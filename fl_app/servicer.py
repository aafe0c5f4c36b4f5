"""The gRPC side of the FL server: :class:`FLServer` answers ``Join`` (a stream of tasks) and
``Submit`` (an update, refused with a gRPC status and a logged ``failure`` event when it may not
be taken) and coordinates one round at a time (``run_round``: send TRAIN, wait until every
selected client delivered or failed, FedAvg); :func:`start_grpc_server` serves it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc

from fl_app import config as cfg
from fl_app.events import EventLog
from fl_app.fedavg import fedavg
from fl_app.models import build_model
from fl_app.proto import fl_pb2, fl_pb2_grpc
from fl_app.sessions import Round, Session
from fl_app.submission import check_submission, peer_identity
from fl_app.tensors import Layout, UpdateError, from_proto, state_to_arrays, to_proto

POLL = 0.2  # seconds between liveness checks of a Join stream waiting for its next task
SERVICE = "ztfl.fl.v1.FederatedLearning"


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
        refusal = check_submission(self.conf, self.max_update_bytes, request, rnd, session,
                                   context)
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
        away = conf.absent_in(number)  # the availability trace: not selected, not failed
        with self.lock:
            selected = sorted(set(self.sessions) - away)
            rnd = Round(number=number, selected=set(selected), started=self.log.now())
            self.round = rnd
        if away:
            self.log.emit("round_start", round=number, selected=selected, absent=sorted(away))
        else:
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
