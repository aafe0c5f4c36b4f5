"""``ztfl cluster up|status|down|clean``: the local clusters (network namespaces on a bridge)
by hand: start one, list them, remove one, or remove every cluster whose harness died.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from k8s_fixtures.cluster import ClusterError
from k8s_fixtures.local import state
from k8s_fixtures.local.backend import LocalCluster
from k8s_fixtures.proc import start_time


def register(subparsers: Any) -> None:
    """Add ``cluster`` (with ``up``, ``status``, ``down``, ``clean``) to ``subparsers``."""
    p = subparsers.add_parser("cluster", help="manage local (network namespace) clusters",
                              description=__doc__)
    p.add_argument("--state-dir", type=Path, default=None,
                   help="state directory (default: $ZTFL_STATE_DIR, /run/ztfl as root, "
                        "~/.local/state/ztfl otherwise)")
    sub = p.add_subparsers(dest="cluster_command", required=True)
    up = sub.add_parser("up", help="create a cluster; stays until Ctrl-C unless --detach")
    up.add_argument("--name", help="cluster name (prefix of all its namespaces)")
    up.add_argument("--cidr", default="10.244.0.0/16", help="pod CIDR")
    up.add_argument("--rootless", action="store_true", help="use a user namespace even as root")
    up.add_argument("--detach", action="store_true",
                    help="leave it running; remove it later with 'ztfl cluster down NAME'")
    up.set_defaults(func=cmd_up)
    st = sub.add_parser("status", help="list clusters in the state directory")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    down = sub.add_parser("down", help="remove a cluster")
    down.add_argument("name")
    down.add_argument("--force", action="store_true",
                      help="also when a live process still owns it")
    down.set_defaults(func=cmd_down)
    clean = sub.add_parser("clean", help="remove clusters (and calibration topologies, "
                           "ztdl-*) whose owner died")
    clean.set_defaults(func=cmd_clean)


def _root(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else state.default_root()


def cmd_up(args: argparse.Namespace) -> int:
    cluster = LocalCluster(args.name, cidr=args.cidr, state_root=_root(args),
                           mode="rootless" if args.rootless else None)
    try:
        cluster.start()
    except ClusterError as e:
        print(f"ztfl cluster up: error: {e}", file=sys.stderr)
        return 1
    for name, removed in cluster.cleaned.items():
        print(f"removed stale cluster {name}: {len(removed)} objects")
    print(f"cluster {cluster.name} up ({cluster.mode}) in {cluster.timings['up_s']:.2f}s: "
          f"node netns {cluster.node_netns}, bridge {cluster.bridge} {cluster.gateway}, "
          f"dns {cluster.dns_ip}, state {cluster.state_dir}", flush=True)
    for w in cluster.warnings:
        print(f"warning: {w}")
    if args.detach:
        cluster.detach()
        return 0
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        print("Ctrl-C to tear it down", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.teardown()
    print(f"cluster {cluster.name} down")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rows = []
    for e in state.entries(_root(args)):
        r = e.record
        kind = "live" if e.live else "detached" if r and r.detached else "stale"
        alive = sum(1 for pid, start in (r.pids if r else [])
                    if start_time(pid) == start)
        rows.append({"name": e.name, "state": kind, "mode": r.mode if r else "?",
                     "owner_pid": r.owner_pid if r else None,
                     "netns": len(r.netns) if r else 0, "processes": alive,
                     "cidr": r.cidr if r else "", "path": str(e.path)})
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print(f"no clusters in {_root(args)}")
    else:
        for row in rows:
            print(f"{row['name']:24} {row['state']:8} {row['mode']:8} "
                  f"netns={row['netns']} processes={row['processes']} cidr={row['cidr']}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    for e in state.entries(_root(args)):
        if e.name == args.name:
            if e.live and not args.force:
                owner = e.record.owner_pid if e.record else "?"
                print(f"ztfl cluster down: error: cluster {e.name} is owned by live process "
                      f"{owner}; stop that process or use --force", file=sys.stderr)
                return 1
            removed = state.purge(e.path, force=True)
            left = [r for r in removed if r.startswith(state.LEFT)]
            if left:
                print(f"ztfl cluster down: error: cluster {e.name}: {'; '.join(left)}",
                      file=sys.stderr)
                return 1
            print(f"cluster {e.name} removed ({len(removed)} namespaces/cgroups)")
            return 0
    print(f"ztfl cluster down: error: no cluster {args.name} in {_root(args)}", file=sys.stderr)
    return 1


def cmd_clean(args: argparse.Namespace) -> int:
    done = state.clean_stale(_root(args))
    failed = False
    for name, removed in done.items():
        print(f"removed stale cluster {name}: {', '.join(removed) or 'nothing left'}")
        failed |= any(r.startswith(state.LEFT) for r in removed)
    if not done:
        print("no stale clusters")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m k8s_fixtures.local.cli cluster ...``)."""
    parser = argparse.ArgumentParser(prog="ztfl")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
