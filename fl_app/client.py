"""The FL client: joins the server's task stream, trains locally on its partition, submits.

Run: ``python -m fl_app.client --server HOST:PORT --client-id N --data-dir DIR [--tls-...]``.
Exits 0 when the server ends the run (FINISH), 1 when it cannot reach the server in
``--connect-timeout`` seconds or the server refuses it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import grpc
import torch

from fl_app import config as cfg
from fl_app.data import DataError, RawDataset, load_mnist_raw
from fl_app.models import build_model
from fl_app.partition import parse_split, partition
from fl_app.proto import fl_pb2, fl_pb2_grpc
from fl_app.tensors import from_proto, to_proto
from fl_app.train import load_arrays, train_local, warm_up

# Server answers after which retrying cannot help.
FATAL = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED,
}


def log(cid: int, msg: str) -> None:
    sys.stderr.write(f"fl_app.client[{cid}]: {msg}\n")
    sys.stderr.flush()


class Client:
    def __init__(self, cid: int, data_dir: str) -> None:
        self.cid = cid
        self.data_dir = data_dir
        self.data: RawDataset | None = None
        self.spec: fl_pb2.RunSpec | None = None
        self.model: torch.nn.Module | None = None
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None

    def prepare(self) -> None:
        """The start-up work that needs no run spec, done before joining so that it does not
        land in round 1 (which starts as soon as every client has joined)."""
        self.data = load_mnist_raw(self.data_dir)
        warm_up()

    def setup(self, spec: fl_pb2.RunSpec) -> None:
        if self.spec == spec:
            return  # a rejoin after a network hiccup: the partition is unchanged
        data = self.data if self.data is not None else load_mnist_raw(self.data_dir)
        parts = partition(
            data.y_train, spec.num_clients, parse_split(spec.split), spec.seed, spec.min_samples
        )
        idx = parts[self.cid]
        self.x = torch.from_numpy(data.train_rows(idx))
        self.y = torch.from_numpy(data.y_train[idx])
        self.model = build_model(spec.model, spec.seed)
        self.spec = spec

    def train(self, task: fl_pb2.Task) -> fl_pb2.Update:
        assert self.model is not None and self.x is not None and self.y is not None
        assert self.spec is not None
        load_arrays(self.model, from_proto(task.weights))
        t = task.train
        res = train_local(
            self.model,
            self.x,
            self.y,
            epochs=t.local_epochs,
            batch_size=t.batch_size,
            lr=t.lr,
            momentum=t.momentum,
            max_steps=t.max_steps,
            seed=self.spec.seed * 1_000_003 + task.round * 1009 + self.cid,
        )
        return fl_pb2.Update(
            client_id=self.cid,
            round=task.round,
            weights=to_proto(res.weights),
            num_samples=res.num_samples,
            train_seconds=res.seconds,
        )

    def session(self, stub: fl_pb2_grpc.FederatedLearningStub) -> bool:
        """Follow one Join stream; True when the run finished, False to reconnect."""
        for task in stub.Join(fl_pb2.JoinRequest(client_id=self.cid)):
            if task.kind == fl_pb2.Task.SETUP:
                self.setup(task.spec)
            elif task.kind == fl_pb2.Task.TRAIN:
                try:
                    stub.Submit(self.train(task))
                except grpc.RpcError as exc:
                    # A late or duplicate update is refused for that round only: keep the
                    # session and take part in the next round (a deadline miss is not fatal).
                    if exc.code() not in (grpc.StatusCode.FAILED_PRECONDITION,
                                          grpc.StatusCode.ALREADY_EXISTS):
                        raise
                    log(self.cid, f"update for round {task.round} refused: "
                                  f"{exc.code().name}: {exc.details()}")
            elif task.kind == fl_pb2.Task.FINISH:
                return True
        return False


def main(argv: list[str] | None = None) -> int:
    p = cfg.Parser(prog="fl_app.client", description="FedAvg client.")
    p.add_argument("--server", required=True, help="HOST:PORT of the FL server")
    p.add_argument("--client-id", type=int, required=True)
    p.add_argument("--data-dir", default=cfg.default_data_dir())
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=120.0,
        help="give up after this many seconds without a live server",
    )
    p.add_argument("--max-message-mb", type=int, default=64)
    cfg.add_tls_args(p)
    ns: argparse.Namespace = p.parse_args(argv)
    data_dir = ns.data_dir or os.environ.get("ZTFL_DATA_DIR")
    try:
        if not data_dir or not os.path.isdir(data_dir):
            raise cfg.ConfigError(f"--data-dir {data_dir}: no such directory")
        if ns.threads < 1:
            raise cfg.ConfigError(f"--threads {ns.threads}: must be >= 1")
        tls = cfg.tls_files(ns)
    except cfg.ConfigError as exc:
        p.error(str(exc))
    torch.set_num_threads(ns.threads)
    client = Client(ns.client_id, data_dir)
    try:
        client.prepare()
    except DataError as exc:
        log(ns.client_id, f"error: {exc}")
        return 2
    options = cfg.grpc_options(ns.max_message_mb)
    if tls is None:
        channel = grpc.insecure_channel(ns.server, options=options)
    else:
        cert, key, ca = tls
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        channel = grpc.secure_channel(ns.server, creds, options=options)
    stub = fl_pb2_grpc.FederatedLearningStub(channel)
    last_contact = time.monotonic()
    backoff = 0.1
    try:
        while True:
            remaining = ns.connect_timeout - (time.monotonic() - last_contact)
            try:
                grpc.channel_ready_future(channel).result(timeout=max(remaining, 0.01))
            except grpc.FutureTimeoutError:
                log(ns.client_id, f"no live server for {ns.connect_timeout:g} s, giving up")
                return 1
            try:
                if client.session(stub):
                    return 0
                last_contact = time.monotonic()
            except grpc.RpcError as exc:
                code = exc.code()
                if code in FATAL:
                    log(ns.client_id, f"refused by server: {code.name}: {exc.details()}")
                    return 1
                log(ns.client_id, f"stream ended: {code.name}: {exc.details()}")
                if client.spec is not None:
                    last_contact = time.monotonic()
            except DataError as exc:
                log(ns.client_id, f"error: {exc}")
                return 2
            time.sleep(backoff)  # reconnect backoff, not a race workaround
            backoff = min(backoff * 2, 2.0)
    finally:
        channel.close()


if __name__ == "__main__":
    cfg.exit_now(main())
