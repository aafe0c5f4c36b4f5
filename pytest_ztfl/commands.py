"""``ztfl render``, ``ztfl report`` and ``ztfl probe``: the harness's own subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_ztfl.sec import SEC_LEVELS


def _render(args: argparse.Namespace) -> int:
    from pytest_ztfl import matrix as mx
    from pytest_ztfl.render import render_matrix
    from pytest_ztfl.results import ResultsError, check_writable

    try:
        m = mx.load(args.matrix, option="--matrix")
        check_writable(Path(args.out), "--out")
    except (mx.MatrixError, ResultsError) as exc:
        sys.stderr.write(f"ztfl render: error: {exc}\n")
        return 2
    folders = render_matrix(m, Path(args.out), args.image)
    print(f"{len(folders)} cells rendered to {args.out}/<cell-id>/")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pytest_ztfl.report import main_report

    return main_report(args.results_dir, args.out)


def _probe(args: argparse.Namespace) -> int:
    from pytest_ztfl.prove import main_probe

    return main_probe(args.sec, args.mtls, args.data_dir, args.json)


def register(sub: Any) -> None:
    r = sub.add_parser("render", help="write every cell's Kubernetes objects as YAML")
    r.add_argument("--matrix", required=True,
                   help="smoke|quick|paper|full|hetero-smoke or a matrix YAML")
    r.add_argument("--out", required=True, help="output directory (one folder per cell)")
    r.add_argument("--image", default="ghcr.io/ztfl/fl-app:0.1.0")
    r.set_defaults(func=_render)
    p = sub.add_parser("report", help="report.md and figures from a results directory")
    p.add_argument("results_dir")
    p.add_argument("--out", default=None, help="report directory (default RESULTS_DIR/report)")
    p.set_defaults(func=_report)
    q = sub.add_parser(
        "probe", help="run the proofs of enforcement of a SEC level on a fresh local cluster"
    )
    q.add_argument("--sec", required=True, choices=list(SEC_LEVELS))
    q.add_argument("--mtls", default="sidecar", choices=["sidecar", "native"])
    q.add_argument("--data-dir", default=None)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_probe)
