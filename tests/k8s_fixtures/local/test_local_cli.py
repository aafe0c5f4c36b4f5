"""``ztfl cluster up|status|down|clean`` (through ``k8s_fixtures.local.cli``)."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ztlc_support import interruptible, leaks, netns_named

from k8s_fixtures.local import cli as local_cli

pytestmark = pytest.mark.privileged


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = local_cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out + err


def test_register_adds_the_cluster_command() -> None:
    parser = argparse.ArgumentParser(prog="ztfl")
    local_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cluster", "down", "x", "--force"])
    assert (args.command, args.cluster_command, args.name, args.force) == (
        "cluster", "down", "x", True)
    assert args.func is local_cli.cmd_down


def test_up_detach_status_down(state_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sd = ["cluster", "--state-dir", str(state_root)]
    rc, out = cli(capsys, *sd, "up", "--name", "ztlc-cli", "--detach")
    try:
        assert rc == 0 and "cluster ztlc-cli up (root)" in out
        assert "ztlc-cli-node" in netns_named("ztlc-cli")
        rc, out = cli(capsys, *sd, "status", "--json")
        (row,) = json.loads(out)
        assert (row["name"], row["state"], row["netns"], row["processes"]) == (
            "ztlc-cli", "detached", 2, 1)
        rc, out = cli(capsys, *sd, "clean")
        assert out.strip() == "no stale clusters"  # detached is not stale
    finally:
        rc, out = cli(capsys, *sd, "down", "ztlc-cli")
    assert rc == 0 and "removed" in out
    assert leaks("ztlc-cli", state_root) == []
    assert cli(capsys, *sd, "down", "ztlc-cli")[0] == 1


def test_up_in_foreground_stops_on_ctrl_c(state_root: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "k8s_fixtures.local.cli", "cluster", "--state-dir",
         str(state_root), "up", "--name", "ztlc-fg"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    assert proc.stdout is not None
    assert "cluster ztlc-fg up" in proc.stdout.readline()
    assert proc.stdout.readline().startswith("Ctrl-C")
    rc, out = subprocess.run(
        [sys.executable, "-m", "k8s_fixtures.local.cli", "cluster", "--state-dir",
         str(state_root), "down", "ztlc-fg"], capture_output=True, text=True).returncode, ""
    assert rc == 1  # a live owner: refused without --force
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "cluster ztlc-fg down" in out
    assert leaks("ztlc-fg", state_root) == []
