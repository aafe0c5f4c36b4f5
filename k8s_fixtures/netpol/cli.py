"""``ztfl netpol probe``: what does a set of policies really allow, on the real kernel?

Builds the upstream e2e model (namespaces x, y, z; pods a, b, c serving TCP/UDP 80 and 81,
and the probed port if it is another one, named serve-<port>-<tcp|udp>),
applies the given policy files with the nftables enforcer, probes every ordered pod pair on
one port and protocol, and prints the observed truth table next to the evaluator's expected one
with a verdict. Exit status: 0 when they agree, 1 on any mismatch, 2 on bad input or when the
model cannot be built (e.g. not root). Wire it into a parser with :func:`register`.

The model is realised by ``model_factory`` (today :class:`~k8s_fixtures.netpol.probe.NetnsModel`
on plain network namespaces; the local backend can supply its own with the same methods).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import IO

from k8s_fixtures.netpol.e2emodel import PORTS, ModelSpec
from k8s_fixtures.netpol.lint import lint
from k8s_fixtures.netpol.model import NetworkPolicy, Protocol
from k8s_fixtures.netpol.nft import DEFAULT_DENY_ACTION, DenyAction
from k8s_fixtures.netpol.parse import PolicyError, load_policies
from k8s_fixtures.netpol.probe import NetnsModel, ProbeResult

ModelFactory = Callable[[DenyAction], NetnsModel]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]
             ) -> argparse.ArgumentParser:
    """Add ``netpol probe`` to an argparse ``add_subparsers()`` object; returns the parser.

    The probe parser sets ``func``: call ``args.func(args)`` to run it (returns the exit code).
    """
    netpol = subparsers.add_parser("netpol", help="NetworkPolicy tools",
                                   description="NetworkPolicy tools")
    sub = netpol.add_subparsers(dest="netpol_command", required=True)
    p = sub.add_parser("probe", help="probe the e2e model under the given policies",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policies", required=True, action="append", metavar="PATH",
                   help="YAML file or directory of NetworkPolicies (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--protocol", choices=["TCP", "UDP"], default="TCP")
    p.add_argument("--deny-action", choices=[a.value for a in DenyAction],
                   default=DEFAULT_DENY_ACTION.value,
                   help="how denied packets are answered (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=1.0, help="per-probe timeout, seconds")
    p.add_argument("--namespace", default="x",
                   help="namespace of policies without metadata.namespace (default: x)")
    p.set_defaults(func=probe_main)
    return p


def _side_by_side(left: str, right: str) -> str:
    ll, rl = left.splitlines(), right.splitlines()
    width = max(len(x) for x in ll) + 4
    n = max(len(ll), len(rl))
    ll += [""] * (n - len(ll))
    rl += [""] * (n - len(rl))
    return "\n".join(f"{a.ljust(width)}{b}".rstrip() for a, b in zip(ll, rl, strict=True))


def format_text(res: ProbeResult, policies: Sequence[NetworkPolicy], warnings: Sequence[str]
                ) -> str:
    lines = [f"policies: {', '.join(p.key for p in policies) or '(none)'}"]
    lines += [f"warning: {w}" for w in warnings]
    lines.append(f"probe: {res.protocol}/{res.port}, deny action {res.deny_action.value}, "
                 f"{len(res.expected.pods) ** 2} ordered pairs (loopback not judged)")
    lines.append(_side_by_side(res.expected.render("expected (evaluator)"),
                               res.observed.render("observed (kernel)")))
    for m in res.mismatches:
        lines.append(f"MISMATCH {m} [{res.details.get((m.src, m.dst), {}).get('error')}]")
    lines.append("verdict: PASS, observed matches expected" if res.ok
                 else f"verdict: FAIL, {len(res.mismatches)} mismatches")
    return "\n".join(lines)


def format_json(res: ProbeResult, policies: Sequence[NetworkPolicy], warnings: Sequence[str]
                ) -> str:
    doc = {
        "verdict": "pass" if res.ok else "fail",
        "protocol": res.protocol,
        "port": res.port,
        "deny_action": res.deny_action.value,
        "policies": [p.key for p in policies],
        "warnings": list(warnings),
        "expected": res.expected.to_json(),
        "observed": res.observed.to_json(),
        "mismatches": [
            {"src": m.src, "dst": m.dst, "expected": m.expected, "observed": m.observed,
             "error": res.details.get((m.src, m.dst), {}).get("error")}
            for m in res.mismatches
        ],
    }
    return json.dumps(doc, indent=2)


def run_probe(paths: Sequence[str], *, port: int = 80, protocol: Protocol = "TCP",
              deny_action: DenyAction = DEFAULT_DENY_ACTION, timeout: float = 1.0,
              namespace: str = "x", as_json: bool = False, out: IO[str] | None = None,
              err: IO[str] | None = None, model_factory: ModelFactory | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        policies = [p for path in paths for p in load_policies(path, namespace)]
    except (PolicyError, OSError) as e:
        print(f"ztfl netpol probe: error: {e}", file=err)
        return 2
    if not 1 <= port <= 65535:
        print(f"ztfl netpol probe: error: --port {port} is not a port number", file=err)
        return 2
    # The upstream model serves 80 and 81; another probed port is served (and named) as well.
    spec = ModelSpec(ports=tuple(sorted({*PORTS, port})))
    factory = model_factory or (lambda action: NetnsModel(spec, deny_action=action))
    try:
        with factory(deny_action) as model:
            warnings = lint(model.view(policies))
            model.apply(policies)
            res = model.check(protocol, port, timeout)
    except Exception as e:  # the model could not be built: say why, in one line
        print(f"ztfl netpol probe: error: cannot build the probe model: {e}", file=err)
        return 2
    text = format_json(res, policies, warnings) if as_json \
        else format_text(res, policies, warnings)
    print(text, file=out)
    return 0 if res.ok else 1


def probe_main(args: argparse.Namespace) -> int:
    return run_probe(args.policies, port=args.port, protocol=args.protocol,
                     deny_action=DenyAction(args.deny_action), timeout=args.timeout,
                     namespace=args.namespace, as_json=args.json)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m k8s_fixtures.netpol.cli netpol probe ...``)."""
    parser = argparse.ArgumentParser(prog="ztfl")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
