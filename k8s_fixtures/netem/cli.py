"""``ztfl calibrate PROFILE [--json]``: measure network profiles on a private link of this
machine (a throwaway topology: two namespaces on a bridge), one table of figures each.

Each named profile is applied, measured (loss, delay, jitter, RTT over 3 passes, rate) and
judged PASS/FAIL against its targets. Exit status 0 only if every figure passed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .calibrate import Sizes, calibrate, format_table
from .overlay import MECHANISMS
from .profiles import ProfileError, get_profile, load_profiles


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``calibrate`` to an ``argparse`` sub-parsers object; returns the new parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "calibrate", help="measure NET profiles on a live local topology, PASS/FAIL per figure",
        description=__doc__)
    p.add_argument("profiles", nargs="+", metavar="PROFILE", help="e.g. NET2 (several allowed)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--profiles-file", default=None, help="a YAML file overriding/adding profiles")
    p.add_argument("--mechanism", choices=MECHANISMS, default="auto")
    p.add_argument("--passes", type=int, default=Sizes.passes,
                   help="delay/RTT passes, judged on their median (default %(default)s)")
    p.add_argument("--rtt-n", type=int, default=Sizes.rtt_n, help="RTT samples per pass")
    p.add_argument("--loss-n", type=int, default=Sizes.loss_n)
    p.add_argument("--delay-n", type=int, default=Sizes.delay_n,
                   help="one-way delay probes per pass")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        table = load_profiles(args.profiles_file)
        profiles = [get_profile(n, table) for n in args.profiles]
    except (ProfileError, OSError) as e:
        print(f"ztfl calibrate: error: {e}", file=sys.stderr)
        return 2
    if min(args.passes, args.rtt_n, args.delay_n, args.loss_n) < 1:
        print("ztfl calibrate: error: --passes, --rtt-n, --delay-n and --loss-n must be >= 1",
              file=sys.stderr)
        return 2
    sizes = Sizes(passes=args.passes, rtt_n=args.rtt_n, loss_n=args.loss_n,
                  delay_n=args.delay_n)
    results = []
    for prof in profiles:
        results.append(calibrate(prof, mechanism=args.mechanism, sizes=sizes))
        if not args.json:
            print(format_table(results[-1:]), flush=True)
    if args.json:
        json.dump([r.to_dict() for r in results], sys.stdout, indent=1)
        print()
    return 0 if all(r.passed for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: ``python -m k8s_fixtures.netem.cli calibrate NET2``."""
    ap = argparse.ArgumentParser(prog="ztfl")
    register(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
