"""A pod network namespace's counters as the taxonomy reads them, from the kernel and nft
themselves: the policy's named deny counters, an impairment's drops (its named ``dropped``
counter and a counted drop rule), TCP retransmissions and timeouts; another table's accepts
count for nothing."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from k8s_fixtures.local import netns_counters
from k8s_fixtures.local.topology import netns_exec

pytestmark = pytest.mark.privileged

RULES = """\
table inet ztfl_netpol {
\tcounter denied_ingress {
\t}
\tcounter denied_egress {
\t}
\tchain output {
\t\ttype filter hook output priority filter; policy accept;
\t\tip daddr 127.0.0.3 meta l4proto udp counter name "denied_egress" reject
\t}
}
table inet ztfl_fault {
\tcounter dropped {
\t}
\tchain out {
\t\ttype filter hook output priority -10; policy accept;
\t\tip daddr 127.0.0.2 counter name "dropped" drop
\t\tip daddr 127.0.0.4 counter drop
\t\tip daddr 127.0.0.5 counter accept
\t}
}
"""


@pytest.fixture
def netns() -> Iterator[str]:
    ns = f"ztnc-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(netns_exec(ns, "ip", "link", "set", "lo", "up"), check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _send(ns: str, script: str) -> None:
    subprocess.run(netns_exec(ns, "bash", "-c", script), capture_output=True, timeout=30)


def _read(ns: str) -> netns_counters.NetnsCounters:
    out = subprocess.run(netns_exec(ns, "sh", "-c", netns_counters.SCRIPT), capture_output=True,
                         text=True, check=True).stdout
    return netns_counters.parse(out)


def test_counters_read_from_a_real_namespace(netns: str) -> None:
    assert _read(netns).values() == (0, 0, 0, 0, 0)  # no table: nothing, and no error
    subprocess.run(netns_exec(netns, "nft", "-f", "-"), input=RULES, text=True, check=True)
    _send(netns, "for i in 1 2 3; do echo x > /dev/udp/127.0.0.3/53; done")
    _send(netns, "echo x > /dev/udp/127.0.0.4/9; echo x > /dev/udp/127.0.0.5/9")
    # a SYN dropped on its way out: retransmitted after the 1 s RTO, then given up at 2 s
    _send(netns, "timeout 2 bash -c 'echo x > /dev/tcp/127.0.0.2/80'")
    got = _read(netns)
    assert got.denied_egress == 3 and got.denied_ingress == 0, got
    assert got.dropped_other >= 3, got  # 1 + the SYN and its retransmission(s)
    assert got.tcp_retrans >= 1 and got.tcp_timeouts >= 1, got
    # the impairment heals: its rules go, its named counter stays (and is still read)
    subprocess.run(netns_exec(netns, "nft", "delete", "chain", "inet", "ztfl_fault", "out"),
                   check=True)
    assert _read(netns).dropped_other == got.dropped_other - 1  # the rule's own counter went


def test_parse_reads_the_proc_tables_by_header() -> None:
    proc = ("Tcp: RtoAlgorithm RtoMin RetransSegs InErrs\nTcp: 1 200 17 0\n"
            "TcpExt: SyncookiesSent TCPTimeouts\nTcpExt: 0 4\n")
    got = netns_counters.parse(proc + netns_counters.SEPARATOR + "\n")
    assert (got.tcp_retrans, got.tcp_timeouts, got.denied_egress) == (17, 4, 0)
