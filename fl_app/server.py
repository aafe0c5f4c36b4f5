"""The FL server: gRPC service plus the coordinator that runs synchronous FedAvg rounds.

Clients open a ``Join`` stream and receive tasks; they answer each TRAIN task with ``Submit``.
A round ends when every selected client has either delivered a valid update or failed
(disconnected, timed out at the deadline, sent an invalid update); it succeeds when at least
``min_participants`` valid updates arrived, and the global model becomes their FedAvg.
Nothing a client sends can crash the server: bad input is refused with a gRPC status and
logged as a ``failure`` event with its class.

Run: ``python -m fl_app.server --data-dir DIR --clients 5 --rounds 10 [--tls-cert ...]``.

The parts: :mod:`fl_app.servicer` (the gRPC handlers and the round coordinator),
:mod:`fl_app.submission` (peer identity and the checks on a submitted update),
:mod:`fl_app.sessions` (a client's stream, a round); this module runs a whole run
(:func:`run`) and is the entry point. Their names are importable from here as before.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import torch
from inotify_simple import INotify, flags

from fl_app import config as cfg
from fl_app.data import DataError, load_mnist
from fl_app.events import EventLog
from fl_app.models import num_parameters
from fl_app.partition import PartitionError, parse_split, partition, summary
from fl_app.servicer import POLL, SERVICE, FLServer, start_grpc_server
from fl_app.sessions import Round, Session
from fl_app.submission import peer_identity
from fl_app.train import evaluate, load_arrays

# The names this module has always offered; most live in .servicer, .sessions, .submission.
__all__ = [
    "POLL",
    "SERVICE",
    "FLServer",
    "Round",
    "Session",
    "main",
    "peer_identity",
    "run",
    "start_grpc_server",
]


def _wait_for_file(path: str, timeout: float, poll: float = 0.05) -> bool:
    """The harness releases a held run by creating ``path`` (after its proofs passed, and with
    ``--hold-rounds`` before each round). Its directory is watched (inotify), so a release is
    seen when it happens; ``poll`` bounds each wait (a directory that cannot be watched is
    polled)."""
    deadline = time.monotonic() + timeout
    with INotify() as watch:
        with contextlib.suppress(OSError):
            watch.add_watch(os.path.dirname(path) or ".",
                            flags.CREATE | flags.MOVED_TO | flags.ATTRIB)
        while not os.path.exists(path):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            watch.read(timeout=int(1000 * min(poll, left)) + 1)
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
