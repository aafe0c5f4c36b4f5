"""Run configuration of the FL server, its command-line flags, and their validation.

Invalid values are refused before anything starts, with one line naming the flag.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn

from fl_app.model_sizes import MODELS
from fl_app.partition import PartitionError, parse_split


class ConfigError(ValueError):
    """A configuration value is invalid; the message starts with the flag's name."""


@dataclass(frozen=True)
class ServerConfig:
    data_dir: str
    num_clients: int = 5
    rounds: int = 10
    min_participants: int = 0  # 0 -> ceil(0.6 * num_clients)
    round_deadline: float = 60.0
    join_timeout: float = 120.0
    local_epochs: int = 1
    max_steps: int = 0
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    eval_every: int = 5
    target_accuracy: float = 0.95
    model: str = "small"
    split: str = "iid"
    seed: int = 0
    min_samples: int = 10
    run_id: str = "run"
    allowed_ids: tuple[str, ...] = field(default_factory=tuple)
    max_message_mb: int = 64
    hold_file: str = ""  # start round 1 only once this file exists ("": at once)
    hold_rounds: bool = False  # also hold each round r until "<hold_file>.<r>" exists
    inject_delay_ms: float = 0.0  # a known effect: the server waits this long in every round
    # (round, client) pairs in which the client is away (an availability trace): the server
    # does not select it that round; absent, not failed
    absent: tuple[tuple[int, int], ...] = ()

    @property
    def min_required(self) -> int:
        return self.min_participants or math.ceil(0.6 * self.num_clients)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["min_participants"] = self.min_required
        d["allowed_ids"] = list(self.allowed_ids)
        d["absent"] = [list(p) for p in self.absent]
        return d

    def absent_in(self, number: int) -> set[int]:
        """The clients away in round ``number``."""
        return {c for r, c in self.absent if r == number}

    def validate(self) -> ServerConfig:
        checks: list[tuple[bool, str]] = [
            (self.num_clients >= 1, f"--clients {self.num_clients}: must be >= 1"),
            (self.rounds >= 1, f"--rounds {self.rounds}: must be >= 1"),
            (
                0 <= self.min_participants <= self.num_clients,
                f"--min-participants {self.min_participants}: must be between 1 and --clients",
            ),
            (self.round_deadline > 0, f"--round-deadline {self.round_deadline}: must be > 0"),
            (self.join_timeout > 0, f"--join-timeout {self.join_timeout}: must be > 0"),
            (self.local_epochs >= 1, f"--local-epochs {self.local_epochs}: must be >= 1"),
            (self.max_steps >= 0, f"--max-steps {self.max_steps}: must be >= 0"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}: must be >= 1"),
            (
                self.lr > 0 and math.isfinite(self.lr),
                f"--lr {self.lr}: must be a finite number > 0",
            ),
            (0 <= self.momentum < 1, f"--momentum {self.momentum}: must be in [0, 1)"),
            (self.eval_every >= 1, f"--eval-every {self.eval_every}: must be >= 1"),
            (
                0 < self.target_accuracy <= 1,
                f"--target-accuracy {self.target_accuracy}: must be in (0, 1]",
            ),
            (self.model in MODELS, f"--model {self.model}: expected one of {', '.join(MODELS)}"),
            (self.min_samples >= 1, f"--min-samples {self.min_samples}: must be >= 1"),
            (self.max_message_mb >= 1, f"--max-message-mb {self.max_message_mb}: must be >= 1"),
            (
                not self.hold_rounds or bool(self.hold_file),
                "--hold-rounds: needs --hold-file (round r waits for <hold-file>.<r>)",
            ),
            (
                math.isfinite(self.inject_delay_ms) and 0 <= self.inject_delay_ms <= 60_000,
                f"--inject-delay-ms {self.inject_delay_ms}: must be between 0 and 60000",
            ),
            (
                all(1 <= r <= self.rounds and 0 <= c < self.num_clients for r, c in self.absent),
                "--absent: every ROUND:CLIENT must name a round 1..--rounds and a client "
                "0..--clients-1",
            ),
            (os.path.isdir(self.data_dir), f"--data-dir {self.data_dir}: no such directory"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        try:
            parse_split(self.split)
        except PartitionError as exc:
            raise ConfigError(f"--split {exc}") from None
        return self


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage dump) and exits 2."""

    def error(self, message: str) -> NoReturn:
        one_line = " ".join(message.split())  # e.g. a multi-line download error from torchvision
        sys.stderr.write(f"{self.prog}: error: {one_line}\n")
        sys.exit(2)


def default_data_dir() -> str:
    return os.environ.get("ZTFL_DATA_DIR") or os.path.expanduser("~/.cache/ztfl/mnist")


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Flags that define a run (shared by the server and the loopback launcher)."""
    d = ServerConfig(data_dir="")
    p.add_argument(
        "--data-dir",
        default=default_data_dir(),
        help="MNIST directory (default $ZTFL_DATA_DIR, else ~/.cache/ztfl/mnist)",
    )
    p.add_argument("--clients", type=int, default=d.num_clients, dest="num_clients")
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument(
        "--min-participants",
        type=int,
        default=0,
        help="minimum successful clients per round (default ceil(0.6 x clients))",
    )
    p.add_argument("--round-deadline", type=float, default=d.round_deadline, help="seconds")
    p.add_argument("--join-timeout", type=float, default=d.join_timeout, help="seconds")
    p.add_argument("--local-epochs", type=int, default=d.local_epochs)
    p.add_argument(
        "--max-steps",
        type=int,
        default=d.max_steps,
        help="cap on SGD steps per client per round (0: no cap)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--target-accuracy", type=float, default=d.target_accuracy)
    p.add_argument("--model", default=d.model, choices=MODELS)
    p.add_argument("--split", default=d.split, help="iid or dirichlet-<alpha>")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--min-samples", type=int, default=d.min_samples)
    p.add_argument("--run-id", default=d.run_id)
    p.add_argument(
        "--allowed-id",
        action="append",
        default=[],
        dest="allowed_ids",
        help="SPIFFE id a client certificate must carry (repeatable; mTLS only)",
    )
    p.add_argument("--max-message-mb", type=int, default=d.max_message_mb)
    p.add_argument(
        "--hold-file",
        default="",
        help="wait for this file to exist before round 1 (the harness's release)",
    )
    p.add_argument(
        "--hold-rounds",
        action="store_true",
        help="also hold every round r (a round_hold event) until <hold-file>.<r> exists: the "
        "harness interleaves the rounds of several runs",
    )
    p.add_argument(
        "--inject-delay-ms",
        type=float,
        default=0.0,
        help="a known effect for checking a measurement: wait this many ms inside every round "
        "(default 0: off)",
    )
    p.add_argument(
        "--absent",
        default="",
        help="an availability trace: ROUND:CLIENT[,ROUND:CLIENT...], each a client away from "
        "a round (not selected for it: absent, not failed)",
    )


def parse_absent(text: str) -> tuple[tuple[int, int], ...]:
    """``--absent 2:1,3:0`` -> ((2, 1), (3, 0))."""
    out: list[tuple[int, int]] = []
    for part in filter(None, text.split(",")):
        r, sep, c = part.partition(":")
        if not sep or not r.isdigit() or not c.isdigit():
            raise ConfigError(f"--absent {text}: expected ROUND:CLIENT[,ROUND:CLIENT...]")
        out.append((int(r), int(c)))
    return tuple(sorted(set(out)))


def config_from_args(ns: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        data_dir=ns.data_dir,
        num_clients=ns.num_clients,
        rounds=ns.rounds,
        min_participants=ns.min_participants,
        round_deadline=ns.round_deadline,
        join_timeout=ns.join_timeout,
        local_epochs=ns.local_epochs,
        max_steps=ns.max_steps,
        batch_size=ns.batch_size,
        lr=ns.lr,
        momentum=ns.momentum,
        eval_every=ns.eval_every,
        target_accuracy=ns.target_accuracy,
        model=ns.model,
        split=ns.split,
        seed=ns.seed,
        min_samples=ns.min_samples,
        run_id=ns.run_id,
        allowed_ids=tuple(ns.allowed_ids),
        max_message_mb=ns.max_message_mb,
        hold_file=ns.hold_file,
        hold_rounds=ns.hold_rounds,
        inject_delay_ms=ns.inject_delay_ms,
        absent=parse_absent(ns.absent),
    ).validate()


def add_tls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-cert", help="PEM certificate (mTLS: all three TLS flags or none)")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--tls-ca", help="PEM CA bundle the peer's certificate must chain to")


def tls_files(ns: argparse.Namespace) -> tuple[bytes, bytes, bytes] | None:
    given = [ns.tls_cert, ns.tls_key, ns.tls_ca]
    if not any(given):
        return None
    if not all(given):
        raise ConfigError("--tls-cert/--tls-key/--tls-ca: give all three or none")
    out = []
    for flag, path in zip(("--tls-cert", "--tls-key", "--tls-ca"), given, strict=True):
        try:
            with open(path, "rb") as fh:
                out.append(fh.read())
        except OSError as exc:
            raise ConfigError(f"{flag} {path}: {exc.strerror}") from None
    return out[0], out[1], out[2]


def grpc_options(max_message_mb: int) -> list[tuple[str, int]]:
    limit = max_message_mb * 1024 * 1024
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def exit_now(code: int) -> NoReturn:
    """End a workload process at once: flush its output, then ``os._exit``. The interpreter's
    own teardown (torch, gRPC threads) takes 0.3-1 s of CPU that the harness would otherwise
    wait for, or that would land in another run's round when runs are interleaved."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
