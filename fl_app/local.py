"""Loopback launcher: one FL server and N clients as separate processes on 127.0.0.1.

The debugging path (no namespaces, no root): ``python -m fl_app.local --clients 5 --rounds 20
--model small --data-dir DIR --events run.jsonl`` prints one line per round and a one-screen
summary, and leaves the server's event log in ``--events``. Every process it starts is ended
before it returns, also on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from fl_app import config as cfg
from fl_app.data import check_mnist
from fl_app.events import read_events
from fl_app.summary import render, summarize

SERVER_READY_TIMEOUT = 120.0


def server_argv(ns: Any, events: Path) -> list[str]:
    conf_flags = {
        "--data-dir": ns.data_dir,
        "--clients": ns.num_clients,
        "--rounds": ns.rounds,
        "--min-participants": ns.min_participants,
        "--round-deadline": ns.round_deadline,
        "--join-timeout": ns.join_timeout,
        "--local-epochs": ns.local_epochs,
        "--max-steps": ns.max_steps,
        "--batch-size": ns.batch_size,
        "--lr": ns.lr,
        "--momentum": ns.momentum,
        "--eval-every": ns.eval_every,
        "--target-accuracy": ns.target_accuracy,
        "--model": ns.model,
        "--split": ns.split,
        "--seed": ns.seed,
        "--min-samples": ns.min_samples,
        "--run-id": ns.run_id,
        "--max-message-mb": ns.max_message_mb,
        "--absent": ns.absent,
    }
    argv = [
        sys.executable,
        "-m",
        "fl_app.server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--events",
        str(events),
    ]
    for flag, value in conf_flags.items():
        argv += [flag, str(value)]
    return argv


def client_argv(port: int, cid: int, data_dir: str, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fl_app.client",
        "--server",
        f"127.0.0.1:{port}",
        "--client-id",
        str(cid),
        "--data-dir",
        data_dir,
        "--threads",
        str(threads),
    ]


def _progress(line: str, out: IO[str]) -> int | None:
    """Print a progress line for round_end events; return the port of server_ready."""
    try:
        e = json.loads(line)
    except json.JSONDecodeError:
        return None
    if e.get("event") == "server_ready":
        return int(e["port"])
    if e.get("event") == "round_end":
        state = "ok" if e["ok"] else "FAILED"
        out.write(
            f"round {e['round']:>3}  {e['duration']:.3f} s  "
            f"{len(e['participants'])} participants  {state}\n"
        )
    elif e.get("event") == "eval":
        out.write(f"eval  {e['round']:>3}  accuracy {e['accuracy']:.4f}\n")
    elif e.get("event") == "failure":
        out.write(f"failure  round {e['round']} client {e['client']}: {e['class']}/{e['reason']}\n")
    out.flush()
    return None


class Launch:
    """The processes of one loopback run; ``stop()`` ends every one still alive."""

    def __init__(self, ns: Any, events: Path, out: IO[str]) -> None:
        self.ns, self.events, self.out = ns, events, out
        self.server: subprocess.Popen[str] | None = None
        self.clients: list[subprocess.Popen[bytes]] = []
        self.port: int | None = None
        self._ready = threading.Event()

    def start(self) -> None:
        self.server = subprocess.Popen(
            server_argv(self.ns, self.events), stdout=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._pump, daemon=True).start()
        if not self._ready.wait(SERVER_READY_TIMEOUT) or self.port is None:
            raise RuntimeError(
                f"fl_app.local: the server did not become ready (exit code {self.server.poll()})"
            )
        for cid in range(self.ns.num_clients):
            self.clients.append(
                subprocess.Popen(client_argv(self.port, cid, self.ns.data_dir, self.ns.threads))
            )

    def _pump(self) -> None:
        assert self.server is not None and self.server.stdout is not None
        for line in self.server.stdout:
            port = _progress(line, self.out)
            if port is not None:
                self.port = port
                self._ready.set()
        self._ready.set()

    def wait(self) -> int:
        assert self.server is not None
        rc = self.server.wait()
        for c in self.clients:
            try:
                c.wait(timeout=10)
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()
        return rc

    def stop(self) -> None:
        procs: list[subprocess.Popen[Any]] = [*self.clients]
        if self.server is not None:
            procs.append(self.server)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main(argv: Sequence[str] | None = None) -> int:
    p = cfg.Parser(prog="fl_app.local", description=__doc__)
    cfg.add_run_args(p)
    p.add_argument(
        "--events",
        type=Path,
        default=Path("fl-events.jsonl"),
        help="where the server's event log goes (overwritten)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per client")
    ns = p.parse_args(argv)
    created = not os.path.exists(ns.data_dir)
    try:
        # Fetch the dataset once here (only when absent), not concurrently in every process.
        os.makedirs(ns.data_dir, exist_ok=True)
        check_mnist(ns.data_dir, download=True)
    except Exception as exc:  # DataError/OSError, or torchvision's URLError/RuntimeError offline
        if created:
            shutil.rmtree(ns.data_dir, ignore_errors=True)
        p.error(
            f"--data-dir {ns.data_dir}: no MNIST files there and the download failed ({exc}); "
            "set ZTFL_DATA_DIR to a directory holding MNIST/raw/*.gz"
        )
    try:
        conf = cfg.config_from_args(ns)
        if ns.threads < 1:
            raise cfg.ConfigError(f"--threads {ns.threads}: must be >= 1")
    except cfg.ConfigError as exc:
        p.error(str(exc))
    ns.min_participants = conf.min_participants
    try:
        ns.events.parent.mkdir(parents=True, exist_ok=True)
        ns.events.unlink(missing_ok=True)
    except OSError as exc:
        p.error(f"--events {ns.events}: {exc.strerror}")
    launch = Launch(ns, ns.events, sys.stdout)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        launch.start()
        rc = launch.wait()
    except KeyboardInterrupt:
        sys.stderr.write("fl_app.local: interrupted, stopping all processes\n")
        return 130
    finally:
        launch.stop()
        signal.signal(signal.SIGTERM, previous)
    if not ns.events.exists():
        sys.stderr.write(f"fl_app.local: error: the server wrote no event log (exit code {rc})\n")
        return rc or 1
    print(render(summarize(read_events(ns.events))))
    print(f"events: {ns.events}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
