"""The ``ztfl`` command line: thin dispatch to the modules that do the work.

``ztfl cluster up|status|down|clean``   the local cluster (k8s_fixtures.local_cli)
``ztfl netpol probe``                   what a set of NetworkPolicies really allows
``ztfl calibrate NET2``                 measure a network profile on a live link
``ztfl probe --sec SEC3``               the proofs of enforcement on a live cluster
``ztfl render --matrix quick --out D``  every cell's Kubernetes manifests as YAML
``ztfl report RESULTS_DIR``             report.md and figures from stored results
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommands registered by the package that owns them: module -> register(subparsers).
SUBCOMMANDS = (
    "k8s_fixtures.local_cli",
    "k8s_fixtures.netpol.cli",
    "k8s_fixtures.netem.cli",
    "pytest_ztfl.commands",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ztfl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in SUBCOMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        build_parser().print_help()
        return 2
    rc: int = func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
