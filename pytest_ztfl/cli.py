"""The ``ztfl`` command line: each subcommand is registered by the module that owns it
(``SUBCOMMANDS``), so this file only dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pytest_ztfl import environment

# Subcommands registered by the package that owns them: module -> register(subparsers).
SUBCOMMANDS = (
    "k8s_fixtures.local.cli",
    "k8s_fixtures.netpol.cli",
    "k8s_fixtures.netem.cli",
    "pytest_ztfl.commands",
)


DESCRIPTION = """\
pytest-ztfl's tools beside the pytest plugin (pytest --ztfl-matrix=quick runs the measurements):

  ztfl cluster up|status|down|clean   local clusters (network namespaces on a bridge)
  ztfl netpol probe --policies P.yaml what a set of NetworkPolicies really allows
  ztfl calibrate NET2                 measure a network profile on a private link
  ztfl probe --sec SEC3               the proofs of enforcement on a fresh local cluster
  ztfl render --matrix quick --out D  every cell's Kubernetes objects as YAML
  ztfl report RESULTS_DIR             report.md and figures from stored results
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ztfl", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    version = environment.package_version("pytest-ztfl") or "unknown"  # a bare source tree
    parser.add_argument("--version", action="version", version=f"ztfl (pytest-ztfl) {version}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for module in SUBCOMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:  # a bare ``ztfl``: what it can do, as a usage error
        parser.print_help(sys.stderr)
        return 2
    rc: int = func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
