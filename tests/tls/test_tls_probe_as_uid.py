"""``probe connect --as-uid``: the connect leaves as that uid, so a rule keyed on the sidecar
proxy's uid (the outbound redirect's exception) applies to it, as the client-to-client proof of
sidecar cells needs."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from k8s_fixtures.tls.sidecar import PROXY_UID

pytestmark = pytest.mark.privileged
PORT = 50051
# only the proxy's uid may connect to PORT: anyone else gets a reset
RULES = f"""table inet ztfl_test {{
  chain output {{
    type filter hook output priority 0; policy accept;
    meta skuid {PROXY_UID} accept
    tcp dport {PORT} reject with tcp reset
  }}
}}
"""
LISTEN = ("import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,"
          f"socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',{PORT}))\ns.listen(8)\n"
          "print('up',flush=True)\ntime.sleep(60)")


@pytest.fixture
def netns() -> Iterator[str]:
    ns = f"zttl-uid-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    listener = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=RULES, text=True,
                       check=True)
        listener = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", LISTEN],
                                    stdout=subprocess.PIPE, text=True)
        assert listener.stdout is not None and listener.stdout.readline().strip() == "up"
        yield ns
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _connect(ns: str, *extra: str) -> dict[str, object]:
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m",
                          "k8s_fixtures.tls.probe", "connect", "--target", f"127.0.0.1:{PORT}",
                          "--timeout", "3", *extra], capture_output=True, text=True)
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_only_the_connect_as_the_proxy_uid_passes_a_rule_keyed_on_it(netns: str) -> None:
    as_root = _connect(netns)
    assert as_root["ok"] is False and "Connection" in str(as_root["error"]), as_root
    as_proxy = _connect(netns, "--as-uid", str(PROXY_UID))
    assert as_proxy["ok"] is True, as_proxy
