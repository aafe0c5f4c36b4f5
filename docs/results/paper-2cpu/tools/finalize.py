"""Copy the paper run's results into the paper-results worktree and write PARTIAL.md, the
report (by the pinned code) and the README row. Usage:

    python3 finalize.py [--extra FILE] "SITTING|NOTE" ...
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path

OUT = Path("/work/paper-run2/out")
RES = Path("/work/paper-res")
DEST = RES / "docs/results/paper-2cpu"
WT = Path("/work/paper-wt2")
PY = "/work/main/.venv/bin/python"
COPY = ("matrix.json", "design.json", "cells", "events", "calibration", "runs.jsonl",
        "rounds.csv", "sittings")


def utc(t: float, fmt: str) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime(fmt)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--extra", type=Path, default=None)
    ap.add_argument("--final", action="store_true",
                    help="all 80 cells: RUN.md instead of PARTIAL.md, the README's measured time")
    ap.add_argument("sittings", nargs="+")
    a = ap.parse_args()
    for name in COPY:
        src, dst = OUT / name, DEST / name
        if not src.exists():
            continue
        if dst.is_dir():
            shutil.rmtree(dst)
        elif dst.exists():
            dst.unlink()
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    rows = [json.loads(p.read_text()) for p in sorted((DEST / "cells").glob("*.json"))]
    commits = {r["environment"]["git_commit"] for r in rows}
    assert commits == {"529371a874a66dc3265cde6139ce36d71677d216"}, commits
    blocks: dict[str, list[dict]] = {}
    for r in rows:
        blocks.setdefault(r["design"]["block"], []).append(r)
    assert all(len(v) == 4 for v in blocks.values()), {k: len(v) for k, v in blocks.items()}
    proofs = [p for r in rows for p in r.get("proofs", [])]
    passed = sum(bool(p.get("passed")) for p in proofs)
    rounds = [rd for r in rows for rd in r["metrics"]["rounds"]]
    failed = sum(not rd["ok"] for rd in rounds)
    cal: dict[str, set] = {}
    for r in rows:
        c = r["overlays"]["net"].get("calibration") or {}
        cal.setdefault(r["cell"]["net"], set()).add(c.get("passed"))
    cals = ", ".join(f"{n} {'passed' if v == {True} else 'NOT all passed'}"
                     for n, v in sorted(cal.items()))
    order = sorted(blocks, key=lambda k: min(r["started_wall"] for r in blocks[k]))
    win = {}
    for k in order:
        s = min(r["started_wall"] for r in blocks[k])
        f = max(r["finished_wall"] for r in blocks[k])
        win[k] = (s, f, (f - s) / 60)
    lines = [
        "# `paper`, in progress",
        "",
        "Measured at `529371a` (every row's `environment.git_commit`), the instrument with the C delay",
        "line, from a worktree pinned at that commit and resumed sitting by sitting with the same",
        "command, on this 2-core machine with nothing else running:",
        "",
        "    git worktree add WT 529371a && cd WT && ZTFL_DATA_DIR=/work/shared/data/mnist \\",
        "      python -m pytest --ztfl-matrix=paper --ztfl-out=OUT --ztfl-resume --ztfl-retries=1",
        "",
        "An earlier start of this run (12 cells at `c00b173`, with the Python delay line) was set aside",
        "when the C data plane landed, so that one directory holds one version of the instrument; it",
        "stays in the history (`76f9939`).",
        "",
        f"So far: {len(rows)} of 80 cells ({len(blocks)} of 20 blocks); proofs {passed} of {len(proofs)}",
        f"passed; {failed} of {len(rounds)} rounds failed; calibrations {cals}.",
        "",
        "| sitting | note |",
        "|---|---|",
        *(f"| {s.split('|', 1)[0]} | {s.split('|', 1)[1]} |" for s in a.sittings),
        "",
        "| block | window (its rows) | wall time | machine (kernel) |",
        "|---|---|---|---|",
    ]
    for k in order:
        s, f, m = win[k]
        kernels = sorted({r["environment"]["kernel"] for r in blocks[k]})
        day = utc(s, "%Y-%m-%d")
        lines.append(f"| {k} | {day} {utc(s, '%H:%M')}-{utc(f, '%H:%M')} UTC | {m:.1f} min | "
                     f"{', '.join(kernels)} |")
    lines += [
        "",
        "Two blocks measured on 2026-12-05 were set aside and measured again later (the rows in `cells/`):",
        "the machine was not idle during their first measurement (`set-aside/README.md`, with those rows",
        "and event logs).",
        "",
    ]
    if a.extra is not None:
        lines += [a.extra.read_text().rstrip(), ""]
    lines += [
        "The report (`report/`, made by `python -m pytest_ztfl.cli report OUT` in the same worktree)",
        "covers the cells measured so far; it is not the study side by side yet.",
        "",
    ]
    if a.final:
        assert len(rows) == 80, len(rows)
        total = sum(w[2] for w in win.values())
        lines[0] = "# `paper`: the run's record"
        lines[13:15] = [
            f"All 80 cells ({len(blocks)} blocks); proofs {passed} of {len(proofs)} passed; "
            f"{failed} of {len(rounds)} rounds",
            f"failed; calibrations {cals}. The blocks' wall time adds up to {total / 60:.1f} h "
            f"({total:.0f} min).",
        ]
        lines = [x.replace("it is not the study side by side yet.",
                           "its claims section is the study side by side.") for x in lines]
        (DEST / "PARTIAL.md").unlink(missing_ok=True)
        (DEST / "RUN.md").write_text("\n".join(lines))
    else:
        (DEST / "PARTIAL.md").write_text("\n".join(lines))
    r = subprocess.run([PY, "-m", "pytest_ztfl.cli", "report", str(DEST)], cwd=WT,
                       capture_output=True, text=True)
    print(r.stdout[-2000:], r.stderr[-2000:])
    assert r.returncode == 0
    net = {"NET0": [], "NET2": []}
    for k in order:
        net[k.split("-")[0]].append(f"{win[k][2]:.1f}")
    total = sum(w[2] for w in win.values())
    if a.final:
        row = (f"{total / 60:.1f} h of blocks ({total:.0f} min, the 20 blocks' windows added; "
               f"run in sittings with `--ztfl-resume`) at `529371a`: NET0 blocks "
               f"{min(map(float, net['NET0'])):.1f}-{max(map(float, net['NET0'])):.1f} min, NET2 "
               f"{min(map(float, net['NET2'])):.1f}-{max(map(float, net['NET2'])):.1f} min "
               "([docs/results/paper-2cpu/](docs/results/paper-2cpu/RUN.md), "
               "[report](docs/results/paper-2cpu/report/report.md)) |")
    else:
        row = ""
    row = row or (f"in progress: {len(rows)} of 80 cells ({len(blocks)} of 20 blocks of 4 cells) measured "
           f"at `529371a`: NET0 blocks {', '.join(net['NET0'])} min; NET2 blocks "
           f"{', '.join(net['NET2'])} min ([docs/results/paper-2cpu/]"
           "(docs/results/paper-2cpu/PARTIAL.md)) |")
    readme = RES / "README.md"
    text = readme.read_text()
    new, n = re.subn(r"(\| `paper` \| [^|]+\| [^|]+\| ).*\|$",
                     lambda m: m.group(1) + row, text, count=1, flags=re.M)
    assert n == 1
    readme.write_text(new)
    print("\n".join(lines[13:15]))


if __name__ == "__main__":
    main()
