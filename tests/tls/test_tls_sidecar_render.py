"""Sidecar rendering without a kernel: stunnel.conf and the nftables redirect script."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8s_fixtures.tls.secret import TLSFiles
from k8s_fixtures.tls.sidecar import (
    SidecarError,
    SidecarSpec,
    render_nft_rules,
    render_stunnel_config,
)

FILES = TLSFiles(Path("/m/tls.crt"), Path("/m/tls.key"), Path("/m/ca.crt"))
CLIENT_ID = "spiffe://cluster.local/ns/run/sa/fl-client"


def test_server_pod() -> None:
    spec = SidecarSpec(pod="fl-server", files=FILES, inbound_ports=(50051, 8080),
                       allowed_peers=(CLIENT_ID,))
    conf = render_stunnel_config(spec).splitlines()
    assert "[inbound-50051]" in conf and "[inbound-8080]" in conf
    assert conf.index("accept = 0.0.0.0:4143") < conf.index("connect = 127.0.0.1:50051")
    assert "accept = 0.0.0.0:4144" in conf
    assert conf.count("checkHost = fl-client.run.serviceaccount.identity.cluster.local") == 2
    for line in ("requireCert = yes", "verifyChain = yes", "sslVersionMin = TLSv1.3",
                 "setuid = 2102", "cert = /m/tls.crt", "CAfile = /m/ca.crt"):
        assert line in conf
    assert "[outbound]" not in conf
    nft = render_nft_rules(spec)
    assert 'iifname != "lo" tcp dport 50051 redirect to :4143' in nft
    assert 'iifname != "lo" tcp dport 8080 redirect to :4144' in nft
    assert "hook output" not in nft
    assert spec.listen_ports() == [4143, 4144]


def test_client_pod() -> None:
    spec = SidecarSpec(pod="fl-client-0", files=FILES, outbound_ports=(50051,),
                       server_peers=("fl-server.run.svc.cluster.local",))
    conf = render_stunnel_config(spec).splitlines()
    for line in ("[outbound]", "client = yes", "accept = 127.0.0.1:4140",
                 "transparent = destination", "checkHost = fl-server.run.svc.cluster.local"):
        assert line in conf
    assert not any(line.startswith("connect =") for line in conf)
    nft = render_nft_rules(spec).splitlines()
    body = [ln.strip() for ln in nft]
    # The proxy's own uid and local traffic are skipped before the redirect.
    assert body.index("meta skuid 2102 return") < body.index(
        "tcp dport { 50051 } redirect to :4140")
    assert 'oifname "lo" return' in body
    assert nft[:2] == ["table inet ztfl_sidecar", "delete table inet ztfl_sidecar"]


def test_certless_client_and_bad_specs() -> None:
    spec = SidecarSpec(pod="p", files=FILES, outbound_ports=(1,), send_cert=False)
    assert "cert = " not in render_stunnel_config(spec)
    with pytest.raises(SidecarError, match="pod p: an inbound proxy must present"):
        render_stunnel_config(SidecarSpec(pod="p", files=FILES, inbound_ports=(1,),
                                          send_cert=False))
    with pytest.raises(SidecarError, match="neither inbound nor outbound"):
        render_stunnel_config(SidecarSpec(pod="p", files=FILES))
