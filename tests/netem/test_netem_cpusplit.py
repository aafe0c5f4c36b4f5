"""The delay line's CPU split by call stack (pure logic over ``perf script`` output captured on
this machine during a paper-CNN NET2 cell: data/perf-script-delayline.txt, one real sample of
each kind, in this order)."""

from __future__ import annotations

from pathlib import Path

import pytest

from k8s_fixtures.netem import cpusplit
from k8s_fixtures.netem.cpusplit import ELSEWHERE, ONWARD_FORWARD, ONWARD_RECEIVE, Stack

SAMPLE = (Path(__file__).parent / "data" / "perf-script-delayline.txt").read_text()
DELAYLINE = 31699  # the delay line's process; 31702 is its C loop's thread

EXPECTED = [
    ONWARD_RECEIVE,                # a verdict's bottom half ran the receiving pod's TCP
    ONWARD_FORWARD,                # a verdict's re-injected packet over the bridge to veth
    "queue read (recvmmsg)",
    "user",                        # the Python thread
    "verdict (netlink)",
    "wait, switch",
    "queueing, in its process",    # an ACK sent by the onward path, queued for its own link
    ELSEWHERE,                     # a client's send, queued in its own context
    "softirq at the verdict",      # a timer softirq that happened to run there: counted own
    None,                          # a packet no rule queued: its forward goes on, not ours
    ELSEWHERE,                     # the idle task's softirq queueing a packet
    None,                          # an exiting thread (tid -1) of another process
    None,                          # a pod's TCP pacing timer sending: the pod's own work
]


def test_perf_script_output_is_parsed_into_stacks() -> None:
    stacks = cpusplit.parse(SAMPLE)
    assert len(stacks) == len(EXPECTED)
    assert (stacks[0].pid, stacks[0].tid) == (DELAYLINE, 31702)
    assert (stacks[-2].pid, stacks[-2].tid) == (31648, -1)
    assert (stacks[-3].pid, stacks[-3].tid) == (0, 0)
    assert stacks[0].frames[0] == "_raw_spin_unlock_irqrestore"
    # compiler suffixes are cut, so a rule names the function
    assert "br_nf_forward_ip" in stacks[7].frames
    assert not any("." in f for s in stacks for f in s.frames)


def test_the_delay_line_is_the_process_that_sends_verdicts() -> None:
    assert cpusplit.delayline_pid(cpusplit.parse(SAMPLE)) == DELAYLINE


def test_each_sample_falls_in_its_category() -> None:
    stacks = cpusplit.parse(SAMPLE)
    assert [cpusplit.classify(s, DELAYLINE) for s in stacks] == EXPECTED


def test_own_work_is_the_process_less_the_onward_path_plus_its_work_elsewhere() -> None:
    s = cpusplit.split(cpusplit.parse(SAMPLE))
    assert s.pid == DELAYLINE
    assert s.in_process == 8 and s.onward == 2 and s.elsewhere == s.counts[ELSEWHERE] == 2
    assert s.own == 8 - 2 + 2
    assert s.own_per_process() == pytest.approx(8 / 8)
    # the onward path alone in the process: all of it is the link's, none the delay line's
    onward_only = cpusplit.Split(DELAYLINE, {ONWARD_RECEIVE: 3, ONWARD_FORWARD: 1})
    assert onward_only.own == 0 and onward_only.own_per_process() == 0


def test_no_verdict_sender_or_two_are_refused_in_one_line() -> None:
    stacks = cpusplit.parse(SAMPLE)
    senders = [s for s in stacks if "nfqnl_recv_verdict_batch" in s.frames]
    assert senders
    with pytest.raises(ValueError, match=r"0 processes send NFQUEUE verdicts \(\[\]\)"):
        cpusplit.delayline_pid([s for s in stacks if s not in senders])
    twin = Stack(4242, 4242, senders[0].frames)
    with pytest.raises(ValueError, match=rf"2 processes .*\[4242, {DELAYLINE}\]"):
        cpusplit.delayline_pid([*stacks, twin])
    with pytest.raises(ValueError, match="none in the delay line's process"):
        cpusplit.Split(DELAYLINE, {ELSEWHERE: 3}).own_per_process()


def test_a_line_that_is_no_sample_header_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not a 'pid/tid' line: 'python 31702'"):
        cpusplit.parse("python 31702\n\tffffffff81 do_syscall_64\n")
