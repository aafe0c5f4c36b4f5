"""Benchmark: what mTLS costs the FL transport, native gRPC mTLS vs stunnel sidecars vs plaintext.

Measures (medians over n repeats, printed with n and the machine):
  * certificate issuance per pod: EC P-256 key + leaf signed by the harness CA, and the full
    per-pod path (issue + Secret + mount as files + validate);
  * first RPC of a fresh client process: TCP connect + TLS handshake(s) + one 1-byte Upload;
  * warm Upload of a ~4.8 MB payload (the paper CNN's update: 1,199,882 float32) on the same
    channel, i.e. the steady per-round transfer cost.
All three transports run on the same local topology (pods = network namespaces on a bridge),
one server pod and one client pod per mode, measured interleaved. Needs root.

    .venv/bin/python benchmarks/bench_tls.py [--repeats 15] [--warm 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from k8s_fixtures.local.topology import Node, PodLink, netns_exec
from k8s_fixtures.tls.ca import CertificateAuthority, service_dns_names
from k8s_fixtures.tls.probe import probe_argv
from k8s_fixtures.tls.secret import TLSFiles, mount_secret, to_secret, write_files
from k8s_fixtures.tls.sidecar import (
    SidecarSpec,
    apply_redirect,
    start_proxy,
    stop_proxy,
    wait_listening,
)
from k8s_fixtures.tls.validate import validate_pair

PORT = 50051
PAPER_CNN_BYTES = 1_199_882 * 4
NS, SERVER_SA, CLIENT_SA = "ztfl-bench", "fl-server", "fl-client"
MODES = ("plaintext", "native", "sidecar")


def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                .splitlines() if ln.startswith("model name")), platform.processor())
    import grpc
    stunnel = subprocess.run(["stunnel", "-version"], capture_output=True, text=True)
    ver = next((ln for ln in stunnel.stderr.splitlines() if ln.startswith("stunnel ")), "?")
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "python": platform.python_version(), "grpcio": grpc.__version__,
            "stunnel": ver.split(" on ")[0]}


def median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1e3


def bench_issuance(n: int, workdir: Path) -> dict[str, Any]:
    ca = CertificateAuthority.create()
    issue, full = [], []
    for i in range(n):
        ident = ca.identity(NS, f"fl-client-{i}")
        t0 = time.perf_counter()
        issued = ca.issue(ident)
        t1 = time.perf_counter()
        files = mount_secret(to_secret(issued), workdir / f"pod{i}")
        validate_pair(files.cert.read_bytes(), files.key.read_bytes(), files.ca.read_bytes(),
                      name=f"pod{i}")
        t2 = time.perf_counter()
        issue.append(t1 - t0)
        full.append(t2 - t0)
    return {"n": n, "issue_ms": median_ms(issue), "issue_secret_mount_validate_ms": median_ms(full)}


class Bench:
    """The topology: per mode a server pod and a client pod; every process kept for cleanup."""

    def __init__(self, workdir: Path) -> None:
        self.work = workdir
        self.node = Node(prefix=f"zttl{uuid.uuid4().hex[:6]}")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pods: dict[str, tuple[PodLink, PodLink]] = {}
        ca = CertificateAuthority.create()
        self.server = write_files(ca.issue(ca.identity(NS, SERVER_SA),
                                           dns_names=service_dns_names(SERVER_SA, NS)),
                                  workdir / "server")
        self.client = write_files(ca.issue(ca.identity(NS, CLIENT_SA)), workdir / "client")

    def _tls(self, f: TLSFiles) -> list[str]:
        return ["--tls-cert", str(f.cert), "--tls-key", str(f.key), "--tls-ca", str(f.ca)]

    def setup(self) -> None:
        self.node.create()
        for mode in MODES:
            srv, cli = self.node.add_pod(f"s{mode[:3]}"), self.node.add_pod(f"c{mode[:3]}")
            self.pods[mode] = (srv, cli)
            argv = ["grpc-server", "--port", str(PORT), "--workers", "2"]
            if mode == "native":
                argv += self._tls(self.server)
            app = subprocess.Popen(netns_exec(srv.netns, *probe_argv(*argv)),
                                   stdout=subprocess.DEVNULL)
            self.procs.append(app)
            wait_listening(app, srv.netns, [PORT], what=f"{mode} server")
            if mode == "sidecar":
                sspec = SidecarSpec(pod=srv.netns, files=self.server, inbound_ports=(PORT,),
                                    allowed_peers=(f"spiffe://cluster.local/ns/{NS}/sa/"
                                                   f"{CLIENT_SA}",))
                cspec = SidecarSpec(pod=cli.netns, files=self.client, outbound_ports=(PORT,),
                                    server_peers=(f"{SERVER_SA}.{NS}.svc.cluster.local",))
                apply_redirect(srv.netns, sspec)
                apply_redirect(cli.netns, cspec)
                self.procs.append(start_proxy(srv.netns, sspec, self.work / "sp"))
                self.procs.append(start_proxy(cli.netns, cspec, self.work / "cp"))

    def teardown(self) -> None:
        for p in reversed(self.procs):
            stop_proxy(p)  # SIGTERM by PID, then SIGKILL
        self.node.destroy()

    def call(self, mode: str, size: int, warm: int) -> dict[str, Any]:
        srv, cli = self.pods[mode]
        argv = ["grpc-call", "--target", f"{srv.ip}:{PORT}", "--size", str(size),
                "--first-size", "1", "--repeat", str(warm), "--timeout", "60"]
        if mode == "native":
            argv += [*self._tls(self.client), "--server-name",
                     f"{SERVER_SA}.{NS}.svc.cluster.local"]
        p = subprocess.run(netns_exec(cli.netns, *probe_argv(*argv)), capture_output=True,
                           text=True, timeout=300)
        if not p.stdout:
            raise RuntimeError(f"{mode}: probe failed: {p.stderr[-500:]}")
        res: dict[str, Any] = json.loads(p.stdout.splitlines()[-1])
        if not res["ok"]:
            raise RuntimeError(f"{mode}: {res}")
        return res


@contextmanager
def bench_topology(workdir: Path) -> Iterator[Bench]:
    b = Bench(workdir)
    try:
        b.setup()
        yield b
    finally:
        b.teardown()


def bench_transport(repeats: int, warm: int, size: int, workdir: Path,
                    progress: Callable[[str], None]) -> dict[str, Any]:
    first: dict[str, list[float]] = {m: [] for m in MODES}
    warm_s: dict[str, list[float]] = {m: [] for m in MODES}
    with bench_topology(workdir) as b:
        for m in MODES:  # one unmeasured round: page cache, lazy imports, ARP
            b.call(m, size, 1)
        for i in range(repeats):
            for m in MODES:
                res = b.call(m, size, warm)
                first[m].append(res["first_s"])
                warm_s[m].extend(res["warm_s"])
            progress(f"repeat {i + 1}/{repeats}")
    out: dict[str, Any] = {"payload_bytes": size, "first_rpc_n": repeats,
                           "warm_n": repeats * warm, "modes": {}}
    for m in MODES:
        w = median_ms(warm_s[m])
        out["modes"][m] = {"first_rpc_ms": median_ms(first[m]), "warm_upload_ms": w,
                           "warm_MBps": size / 1e6 / (w / 1e3)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15, help="client processes per mode")
    ap.add_argument("--warm", type=int, default=5, help="warm uploads per client process")
    ap.add_argument("--size", type=int, default=PAPER_CNN_BYTES)
    ap.add_argument("--issue-n", type=int, default=200)
    ap.add_argument("--json", type=Path)
    ns = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_tls: needs root to create network namespaces", file=sys.stderr)
        return 2
    info = machine()
    print(f"machine: nproc={info['nproc']} cpu={info['cpu']!r} kernel={info['kernel']} "
          f"python={info['python']} grpcio={info['grpcio']} {info['stunnel']}")
    with tempfile.TemporaryDirectory(prefix="zttl-bench-") as tmp:
        iss = bench_issuance(ns.issue_n, Path(tmp) / "issue")
        print(f"certificate issuance per pod (n={iss['n']}): issue {iss['issue_ms']:.2f} ms; "
              f"issue+Secret+mount+validate {iss['issue_secret_mount_validate_ms']:.2f} ms")
        tr = bench_transport(ns.repeats, ns.warm, ns.size, Path(tmp) / "net",
                             lambda s: print(s, file=sys.stderr, flush=True))
    base = tr["modes"]["plaintext"]
    print(f"transport, payload {tr['payload_bytes']} B; first RPC n={tr['first_rpc_n']} "
          f"fresh client processes, warm upload n={tr['warm_n']} (medians):")
    print(f"  {'mode':10} {'first RPC ms':>13} {'Δ vs plain':>11} {'warm 4.8MB ms':>14} "
          f"{'Δ vs plain':>11} {'MB/s':>8}")
    for m, r in tr["modes"].items():
        d_first = r["first_rpc_ms"] - base["first_rpc_ms"]
        d_warm = r["warm_upload_ms"] - base["warm_upload_ms"]
        print(f"  {m:10} {r['first_rpc_ms']:13.2f} {d_first:+11.2f}"
              f" {r['warm_upload_ms']:14.2f} {d_warm:+11.2f} {r['warm_MBps']:8.1f}")
    if ns.json:
        ns.json.write_text(json.dumps({"machine": info, "issuance": iss, "transport": tr},
                                      indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
