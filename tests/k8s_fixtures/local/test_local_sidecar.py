"""mTLS sidecar mode as rendered by ``k8s_fixtures.workload`` runs on the local backend.

The FL run's objects are applied as rendered (Secrets, sidecar ConfigMaps, the init container
installing the nftables redirect with ``nft``, the stunnel proxy container), except that the
app containers run a tiny TCP echo server and client instead of fl_app. The client speaks
plaintext to ``fl-server:50051``; the reply shows the server app got it from its own pod's
proxy (127.0.0.1), and the server proxy's log shows the client's certificate: the bytes went
through both proxies. A pod without a sidecar is refused by the server's redirect.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ztlc_support import PY

from k8s_fixtures.cluster import Obj
from k8s_fixtures.local.backend import LocalCluster
from k8s_fixtures.tls.ca import CertificateAuthority
from k8s_fixtures.tls.sidecar import INBOUND_PROXY_PORT, OUTBOUND_PROXY_PORT, PROXY_UID
from k8s_fixtures.tls.stunnel_log import stunnel_accepted_subjects, stunnel_handshake_failures
from k8s_fixtures.workload import FLRun, render

pytestmark = pytest.mark.privileged
NS = "sidecar"

ECHO_SERVER = (
    "import socket, threading\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 50051)); s.listen()\n"
    "def serve(c, peer):\n"
    "    with c:\n"
    "        data = b''\n"
    "        while not data.endswith(b'\\n'):\n"
    "            chunk = c.recv(4096)\n"
    "            if not chunk:\n"
    "                break\n"
    "            data += chunk\n"
    "        print('connection from', peer[0], flush=True)\n"
    "        c.sendall(peer[0].encode() + b' ' + data)\n"
    "while True:\n"
    "    c, peer = s.accept()\n"
    "    threading.Thread(target=serve, args=(c, peer), daemon=True).start()\n"
)
# Retries only a refused connect: the outbound proxy of its own pod starts next to it (a gRPC
# client would wait for the channel the same way). Anything else is reported as it is.
ECHO_CLIENT = (
    "import json, socket, time\n"
    "deadline, attempts = time.monotonic() + 20, 0\n"
    "while True:\n"
    "    attempts += 1\n"
    "    try:\n"
    "        c = socket.create_connection(('fl-server', 50051), timeout=10)\n"
    "        break\n"
    "    except ConnectionRefusedError:\n"
    "        if time.monotonic() > deadline:\n"
    "            raise\n"
    "        time.sleep(0.05)\n"
    "reply, error = b'', None\n"
    "try:\n"
    "    c.sendall(b'ztlc-canary\\n')\n"
    "    while chunk := c.recv(4096):\n"
    "        reply += chunk\n"
    "except OSError as e:\n"
    "    error = type(e).__name__\n"
    "print(json.dumps({'reply': reply.decode(), 'error': error, 'attempts': attempts}))\n"
)


def app(objs: list[Obj], pod: str, script: str) -> None:
    """Replace the app container's command of ``pod`` (everything else stays as rendered)."""
    p = next(o for o in objs if o["kind"] == "Pod" and o["metadata"]["name"] == pod)
    c = p["spec"]["containers"][0]
    assert c["name"] in ("fl-server", "fl-client") and len(p["spec"]["containers"]) == 2
    assert [i["name"] for i in p["spec"]["initContainers"]] == ["ztfl-proxy-init"]
    c["command"], c["args"] = [PY, "-c", script], []


def client_result(cluster: LocalCluster, pod: str) -> dict[str, Any]:
    # follow returns when the container terminates (or after the timeout: then state says so)
    out = "".join(cluster.logs(NS, pod, container="fl-client", follow=True, timeout=30))
    c = cluster.pod_status(NS, pod).containers[0]
    assert (c.name, c.state, c.exit_code) == ("fl-client", "terminated", 0), out
    parsed: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return parsed


# The (real, effective) uids of the stunnel processes in the exec'd process's network namespace.
STUNNEL_UIDS = (
    "import os\n"
    "me = os.stat('/proc/self/ns/net').st_ino\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        if (open(f'/proc/{pid}/comm').read().strip() == 'stunnel'\n"
    "                and os.stat(f'/proc/{pid}/ns/net').st_ino == me):\n"
    "            uid = [x for x in open(f'/proc/{pid}/status') if x.startswith('Uid:')][0]\n"
    "            print(*uid.split()[1:3])\n"
    "    except OSError:\n"
    "        pass\n"
)


def proxy_listening(cluster: LocalCluster, pod: str, port: int) -> list[str]:
    """Wait until the pod's proxy listens on ``port``; the uids its stunnel runs as."""
    deadline = time.monotonic() + 20
    while True:
        rc, out, err = cluster.exec(NS, pod, ["ss", "-Hltn", f"sport = :{port}"],
                                    container="ztfl-proxy")
        assert rc == 0, err
        if out.strip():
            r = cluster.exec(NS, pod, [PY, "-c", STUNNEL_UIDS], container="ztfl-proxy")
            assert r.rc == 0, r.err
            return r.out.splitlines()
        s = cluster.pod_status(NS, pod)
        assert time.monotonic() < deadline, f"proxy of {pod} not listening on {port}: {s}"
        time.sleep(0.02)


@pytest.fixture
def objs(cluster: LocalCluster) -> Iterator[list[Obj]]:
    rendered = render(FLRun(NS, "ztlc-sidecar", 1, (), tls="sidecar"),
                      ca=CertificateAuthority.create())
    app(rendered, "fl-server", ECHO_SERVER)
    app(rendered, "fl-client-0", ECHO_CLIENT)
    yield rendered
    cluster.delete(namespace=NS)


def test_plaintext_apps_talk_through_both_rendered_sidecars(
        cluster: LocalCluster, objs: list[Obj]) -> None:
    client = next(o for o in objs if o["kind"] == "Pod" and o["metadata"]["name"] ==
                  "fl-client-0")
    cluster.apply([o for o in objs if o is not client])
    srv = cluster.wait_ready(NS, names=["fl-server"], timeout=20)[0]
    init = srv.init_containers[0]
    assert (init.name, init.state, init.exit_code) == ("ztfl-proxy-init", "terminated", 0)
    rc, rules, _ = cluster.exec(NS, "fl-server", ["nft", "list", "table", "inet", "ztfl_sidecar"])
    assert rc == 0 and f"redirect to :{INBOUND_PROXY_PORT}" in rules, rules
    # stunnel dropped to the proxy uid (setuid works inside a local pod) and listens.
    assert proxy_listening(cluster, "fl-server", INBOUND_PROXY_PORT) == [
        f"{PROXY_UID} {PROXY_UID}"]

    cluster.apply(client)
    got = client_result(cluster, "fl-client-0")
    assert (got["reply"], got["error"]) == ("127.0.0.1 ztlc-canary\n", None), got
    # (its own connects ran as that uid: else the redirect would have looped them back)
    assert proxy_listening(cluster, "fl-client-0", OUTBOUND_PROXY_PORT) == [
        f"{PROXY_UID} {PROXY_UID}"]
    cli = cluster.pod_status(NS, "fl-client-0")
    assert cli.init_containers[0].exit_code == 0

    srv_log = "".join(cluster.logs(NS, "fl-server", container="ztfl-proxy"))
    assert stunnel_accepted_subjects(srv_log) == [
        f"CN=fl-client.{NS}.serviceaccount.identity.cluster.local"], srv_log[-2000:]
    assert stunnel_handshake_failures(srv_log) == []
    assert f"accepted connection from {cli.ip}:" in srv_log
    assert list(cluster.logs(NS, "fl-server", container="fl-server")) == [
        "connection from 127.0.0.1\n"]
    cli_log = "".join(cluster.logs(NS, "fl-client-0", container="ztfl-proxy"))
    assert f"CN=fl-server.{NS}.serviceaccount.identity.cluster.local" in cli_log, cli_log[-2000:]

    # A pod without a sidecar: its plaintext is redirected into the server's proxy and refused.
    plain: Obj = {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "plain", "namespace": NS},
                  "spec": {"restartPolicy": "Never", "containers": [
                      {"name": "fl-client", "command": [PY, "-c", ECHO_CLIENT]}]}}
    cluster.apply(plain)
    refused = client_result(cluster, "plain")
    assert refused["reply"] == "" and refused["attempts"] == 1, refused
    assert list(cluster.logs(NS, "fl-server", container="fl-server")) == [
        "connection from 127.0.0.1\n"]  # the app never saw it
