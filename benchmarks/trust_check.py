"""Judge a results directory of benchmarks/trust.yaml (or any matrix with SEC1 and check arms)
against what a trustworthy instrument must show on this machine:

* A/A (SEC1 vs SEC0 at NET0, and the SEC0 arm against itself): every seed's ratio of median
  round duration within +-3%, the paired 95% interval pooled over seeds inside [0.97, 1.03],
  and no SLO gate FAILs at a 5% limit;
* a known injected delay (``delay<MS>ms``) is found in every seed: the interval of its ratio
  of the participants' median path time (``path_seconds``: a participant's time from the
  round's start to the server holding its update, minus its own training, averaged over the
  round's participants) lies above 1, and the path moves by about MS. Whether the round's
  duration shows it too is printed, not judged: 10 ms is 1.4% of a 0.7 s round, under the
  2.5-5% a 15-round seed can resolve on 2 cores (its MDE, printed).

Prints a table per seed and pooled, with n and the load the rounds met; ``--json`` writes the
numbers. Exit 0 when every criterion holds, 1 otherwise, 2 on bad input.
Run: ``python benchmarks/trust_check.py RESULTS_DIR [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from pytest_ztfl.analysis import compare

LIMIT = 1.05  # the gate limit the A/A must pass at
# What is judged as an A/A: the SEC0 arm again, and SEC1 at NET0 (its real cost, nftables
# rules on a few dozen connections, is microseconds per round).
AA = {"aa": "A/A: the SEC0 arm again", "SEC1": "near A/A: NetworkPolicy"}
BOUND = 0.03  # per-seed ratios within +-3%, pooled interval inside [0.97, 1.03]


def _load(out: Path) -> dict[str, dict[str, Any]]:
    cells = out / "cells"
    if not cells.is_dir():
        raise SystemExit(f"trust_check: error: {out}: no cells/ directory (a --ztfl-out)")
    return {p.stem: json.loads(p.read_text()) for p in sorted(cells.glob("*.json"))}


def _fmt(r: Any) -> str:
    return f"{r.estimate:.4f} [{r.ci_low:.4f}, {r.ci_high:.4f}] (MDE {r.mde:.1%})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="trust_check", description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("--json", type=Path)
    ns = p.parse_args(argv)
    rows = _load(ns.results)
    base = {
        (r["cell"]["net"], r["cell"]["data"], r["cell"]["seed"]): r
        for r in rows.values()
        if r["cell"]["sec"] == "SEC0" and not r["cell"].get("check")
    }
    arms: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for row in rows.values():
        c = row["cell"]
        key = (c["net"], c["data"], c["seed"])
        if row is base.get(key) or key not in base:
            continue
        label = c.get("check") or c["sec"]
        arms.setdefault(label, []).append((row, base[key]))
    if not arms:
        print("trust_check: error: no arm to compare with a SEC0 arm", file=sys.stderr)
        return 2
    ok = True
    out: dict[str, Any] = {}
    # every comparison borrows the instance noise the run's repeats show (analysis.paired)
    noise = compare.Noise.of_rows(rows.values())
    found = {m: noise.of(m) for m in ("duration", "path_seconds")}
    for m, n in found.items():
        print(f"instance noise of {m}: "
              f"{n.describe(True) if n else 'none (no comparison repeated in two blocks)'}")
    for label, pairs in sorted(arms.items()):
        known = label.startswith("delay")
        judged = known or label in AA
        kind = "a known effect" if known else AA.get(label, "a control: shown, not judged")
        print(f"\n{label} / SEC0  ({kind})")
        per_seed = []
        usable = []
        for t, b in sorted(pairs, key=lambda p: p[0]["cell"]["seed"]):
            if not (compare.usable(t) and compare.usable(b)):
                why = t.get("error") or b.get("error") or "no completed rounds or failed proofs"
                print(f"  seed {t['cell']['seed']}: not usable: {why}")
                ok = False
                continue
            usable.append((t, b))
            seed = t["cell"]["seed"]
            r = compare.ratio([(t, b)], 0.5, seed=seed, noise=noise)
            d = compare.difference([(t, b)], 0.5, "path_seconds", seed=seed, noise=noise)
            pr = compare.ratio([(t, b)], 0.5, "path_seconds", seed=seed, noise=noise)
            other = [x.get("cpu_other_seconds") for x in t["metrics"]["rounds"]]
            load = statistics.median([x for x in other if x is not None] or [float("nan")])
            good = pr.ci_low > 1 if known else abs(r.estimate - 1) <= BOUND
            good = good or not judged
            ok &= good
            gate = None
            if label in AA:
                gate = "FAIL" if r.ci_low > LIMIT else "pass"
                ok &= gate == "pass"
            print(
                f"  seed {t['cell']['seed']}: round {_fmt(r)}"
                f"{' found' if r.ci_low > 1 else ''}\n"
                f"          path {_fmt(pr)} {d.estimate * 1e3:+.1f} ms "
                f"[{d.ci_low * 1e3:+.1f}, {d.ci_high * 1e3:+.1f}]  n={r.n_treatment}/"
                f"{r.n_baseline}  other CPU {load:.3f} s/round  "
                f"{'ok' if good else 'MISSED'}{'' if gate is None else f', gate@{LIMIT}: {gate}'}"
            )
            per_seed.append(
                {
                    "seed": t["cell"]["seed"],
                    "ratio": r.to_dict(),
                    "path_ratio": pr.to_dict(),
                    "path_diff": d.to_dict(),
                    "ok": good,
                    "gate": gate,
                }
            )
        if not usable:
            continue
        pooled = compare.ratio(usable, 0.5, noise=noise)
        ppath = compare.ratio(usable, 0.5, "path_seconds", noise=noise)
        good = (
            ppath.ci_low > 1
            if known
            else (pooled.ci_low >= 1 - BOUND and pooled.ci_high <= 1 + BOUND) or not judged
        )
        ok &= good
        print(
            f"  pooled over {pooled.blocks} seeds: round {_fmt(pooled)}  path {_fmt(ppath)}  "
            f"{'ok' if good else 'MISSED'}"
        )
        out[label] = {
            "per_seed": per_seed,
            "pooled": pooled.to_dict(),
            "pooled_path": ppath.to_dict(),
            "ok": good,
        }
    print(f"\n{'every criterion holds' if ok else 'NOT every criterion holds'}")
    if ns.json:
        shown = {m: None if n is None else vars(n) for m, n in found.items()}
        ns.json.write_text(json.dumps({"ok": ok, "noise": shown, "arms": out}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
