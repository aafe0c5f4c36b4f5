"""Sidecar mTLS for a pod: a stunnel proxy plus nftables redirects, as a Linkerd proxy does it.

The application speaks plaintext and is not changed; only the pod's network namespace is:

* inbound (a server pod): ``prerouting`` redirects TCP arriving on a non-loopback interface for
  an app port to the proxy's inbound port (4143, Linkerd's). stunnel terminates TLS there,
  requires a client certificate chaining to the CA, optionally checks the peer's identity, and
  forwards plaintext to ``127.0.0.1:<app port>``. The app may bind 127.0.0.1 or 0.0.0.0: with
  the redirect in place no plaintext connection from outside the pod can reach it.
* outbound (a client pod): ``output`` redirects the app's connects to the given destination
  ports to ``127.0.0.1:4140`` (Linkerd's outbound port). stunnel reads the original destination
  (``transparent = destination``, i.e. ``SO_ORIGINAL_DST``) and opens mTLS to it, checking the
  server's identity.
* the proxy runs as its own uid (2102, Linkerd's proxy uid: via stunnel's ``setuid``, or started
  as that uid in a restricted pod) and the ``output`` chain skips that uid, so the proxy's own
  connections are not redirected back to it. The rules are :class:`.redirect.Redirect`'s.

Why stunnel 5.68 rather than HAProxy 2.6: stunnel has the original-destination client mode
built in (``transparent = destination``) and can check the peer's identity (``checkHost`` on
the identity DNS SAN every harness leaf carries, see :mod:`.ca`); HAProxy 2.6 can fetch neither
a client certificate's SANs nor forward to ``SO_ORIGINAL_DST`` without extra Lua/config tricks,
and one stunnel process per pod is a closer analogue of a per-pod sidecar. stunnel's refusal
log lines are parsed by :mod:`.stunnel_log`.

Why ``transparent = destination`` rather than a fixed ``connect = fl-server.<ns>.svc...``: the
outbound proxy then needs no DNS inside the pod, no re-rendering when the server's IP changes,
and works for any destination the app dials, exactly like Linkerd's outbound proxy; the
server's identity is still checked (``checkHost``).

Where it runs: the product renders :func:`render_stunnel_config` and :func:`render_nft_rules`
into a ConfigMap and runs them as the pod's own containers (an ``nft -f`` init container and a
``stunnel`` sidecar container, :mod:`k8s_fixtures.workload`). :func:`apply_redirect`,
:func:`start_proxy` and :func:`stop_proxy` do the same from the host, in a bare network
namespace: ``benchmarks/bench_tls.py`` and the live sidecar tests use them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .redirect import NFT_TABLE as NFT_TABLE  # re-exported: the table's name
from .redirect import Redirect
from .secret import TLSFiles

PROXY_UID = 2102  # Linkerd's proxy uid; the redirect rules skip it
PROXY_CONTAINER = "ztfl-proxy"  # the proxy's container in a pod (ztfl-proxy-init installs rules)
INBOUND_PROXY_PORT = 4143  # Linkerd's inbound proxy port
OUTBOUND_PROXY_PORT = 4140  # Linkerd's outbound proxy port
STUNNEL = "stunnel"
SPIFFE_PREFIX = "spiffe://"


class SidecarError(RuntimeError):
    """The proxy could not be configured or started; the message names the pod/namespace."""


def identity_dns_from_spiffe(spiffe_id: str) -> str:
    """``spiffe://td/ns/N/sa/S`` -> ``S.N.serviceaccount.identity.td`` (see :mod:`.ca`)."""
    parts = spiffe_id.removeprefix(SPIFFE_PREFIX).split("/")
    if (not spiffe_id.startswith(SPIFFE_PREFIX) or len(parts) != 5 or parts[1] != "ns"
            or parts[3] != "sa" or not all(parts)):
        raise ValueError(f"not a workload SPIFFE id spiffe://<td>/ns/<ns>/sa/<sa>: {spiffe_id!r}")
    td, _, ns, _, sa = parts
    return f"{sa}.{ns}.serviceaccount.identity.{td}"


def _check_hosts(names: Iterable[str]) -> list[str]:
    return [identity_dns_from_spiffe(n) if n.startswith(SPIFFE_PREFIX) else n for n in names]


@dataclass(frozen=True)
class SidecarSpec:
    """What one pod's proxy does. Peers may be given as SPIFFE ids or DNS names.

    ``inbound_ports[i]`` is served on ``inbound_proxy_port + i``; ``allowed_peers`` empty means
    any certificate from the CA is accepted. ``server_peers`` is what the server must present
    on outbound connections (empty: any certificate from the CA).
    """

    pod: str
    files: TLSFiles
    inbound_ports: tuple[int, ...] = ()
    outbound_ports: tuple[int, ...] = ()
    allowed_peers: tuple[str, ...] = ()
    server_peers: tuple[str, ...] = ()
    inbound_proxy_port: int = INBOUND_PROXY_PORT
    outbound_proxy_port: int = OUTBOUND_PROXY_PORT
    proxy_uid: int = PROXY_UID
    app_host: str = "127.0.0.1"
    debug: str = "notice"  # stunnel log level; refusal reasons are logged at err/notice
    send_cert: bool = True  # False: an outbound proxy presenting no certificate (negative probes)
    # stunnel starts as root and drops to proxy_uid itself; False: it is started as that uid
    # (a restricted pod, SEC3), so its config names no user to become
    drop_privileges: bool = True

    def redirect(self) -> Redirect:
        """The pod's redirect (what its nft rules, or the node on its behalf, install)."""
        return Redirect(
            tuple((p, self.inbound_proxy_port + i) for i, p in enumerate(self.inbound_ports)),
            self.outbound_ports, self.outbound_proxy_port, self.proxy_uid,
        )

    def listen_ports(self) -> list[int]:
        ports = [self.inbound_proxy_port + i for i in range(len(self.inbound_ports))]
        return ports + ([self.outbound_proxy_port] if self.outbound_ports else [])


def render_stunnel_config(spec: SidecarSpec) -> str:
    """The stunnel.conf for ``spec`` (foreground, logging to stderr, TLS 1.3 only)."""
    if not spec.inbound_ports and not spec.outbound_ports:
        raise SidecarError(f"pod {spec.pod}: sidecar has neither inbound nor outbound ports")
    lines = [
        f"; ztfl sidecar for pod {spec.pod}",
        "foreground = yes", "syslog = no", "pid =", f"debug = {spec.debug}",
        *([f"setuid = {spec.proxy_uid}", f"setgid = {spec.proxy_uid}"]
          if spec.drop_privileges else []),
        "",
    ]
    if not spec.send_cert and spec.inbound_ports:
        raise SidecarError(f"pod {spec.pod}: an inbound proxy must present a certificate")
    own = [f"cert = {spec.files.cert}", f"key = {spec.files.key}"] if spec.send_cert else []
    common = [*own, f"CAfile = {spec.files.ca}", "verifyChain = yes", "requireCert = yes",
              "sslVersionMin = TLSv1.3"]
    for i, port in enumerate(spec.inbound_ports):
        lines += [f"[inbound-{port}]", f"accept = 0.0.0.0:{spec.inbound_proxy_port + i}",
                  f"connect = {spec.app_host}:{port}", *common]
        lines += [f"checkHost = {h}" for h in _check_hosts(spec.allowed_peers)]
        lines.append("")
    if spec.outbound_ports:
        lines += ["[outbound]", "client = yes",
                  f"accept = 127.0.0.1:{spec.outbound_proxy_port}",
                  "transparent = destination", *common]
        lines += [f"checkHost = {h}" for h in _check_hosts(spec.server_peers)]
        lines.append("")
    return "\n".join(lines)


def render_nft_rules(spec: SidecarSpec) -> str:
    """An ``nft -f`` script (re)creating table ``inet ztfl_sidecar`` with the pod's redirects."""
    return spec.redirect().rules()


def _run(argv: Sequence[str], what: str, stdin: str | None = None) -> None:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise SidecarError(f"{what}: {' '.join(argv)}: {proc.stderr.strip() or proc.returncode}")


def apply_redirect(netns: str, spec: SidecarSpec) -> None:
    """Install the pod's redirect rules in ``netns`` (replacing earlier ones atomically)."""
    _run(["ip", "netns", "exec", netns, "nft", "-f", "-"], f"pod {spec.pod} ({netns})",
         stdin=render_nft_rules(spec))


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state in the network namespace of process ``pid``."""
    ports: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            text = Path(f"/proc/{pid}/net/{name}").read_text()
        except OSError:
            continue
        for row in text.splitlines()[1:]:
            cols = row.split()
            if len(cols) > 3 and cols[3] == "0A":
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def _same_netns(pid: int, netns: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return False


def wait_listening(proc: subprocess.Popen[bytes], netns: str, ports: Iterable[int], *,
                   timeout: float = 10.0, what: str = "process") -> None:
    """Poll until ``proc`` (inside ``netns``) listens on all ``ports``; raise if it dies."""
    want = set(ports)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SidecarError(f"{what} in {netns} exited with {proc.returncode} before "
                               f"listening on {sorted(want)}")
        if _same_netns(proc.pid, netns) and want <= listening_ports(proc.pid):
            return
        if time.monotonic() > deadline:
            raise SidecarError(f"{what} in {netns} not listening on {sorted(want)} "
                               f"after {timeout:.0f}s")
        time.sleep(0.01)


def start_proxy(netns: str, spec: SidecarSpec, workdir: Path, *,
                timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Write ``workdir/stunnel.conf`` and start stunnel in ``netns``; log to ``stunnel.log``.

    Returns once the proxy listens; the caller owns the process (stop it with
    :func:`stop_proxy`). On failure the process is stopped and the log tail is in the error.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    conf, log = workdir / "stunnel.conf", workdir / "stunnel.log"
    conf.write_text(render_stunnel_config(spec))
    # stunnel reads cert and key as root, then drops to proxy_uid: files may stay 0600/0700.
    with open(log, "wb") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", netns, STUNNEL, str(conf)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    try:
        wait_listening(proc, netns, spec.listen_ports(), timeout=timeout,
                       what=f"stunnel for pod {spec.pod}")
    except SidecarError as e:
        stop_proxy(proc)
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise SidecarError(f"{e}; log: {' | '.join(tail)}") from None
    return proc


def stop_proxy(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """Stop a proxy started by :func:`start_proxy` (SIGTERM, then SIGKILL); its exit code."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.wait()

