"""A fuzz campaign against the FL server's gRPC handlers: the CI fuzz test
(tests/reliability/test_fuzz_server.py, 40 examples) run with many more examples, then its
counts printed.

Every example is one round of hostile and broken messages from three clients; the test asserts
per message that the server answers with acceptance or a deliberate status (a crash or an
undeliberate status fails it), per round that it closes without waiting for its deadline (a
hang fails it) and that every refusal is logged once, and that the new model is exactly FedAvg
of the accepted updates. So a passing campaign of N messages is N messages with 0 crashes,
0 hangs and every refusal logged.

Run: ``python benchmarks/fuzz_server.py [--examples 1200] [--seed 0]`` (about 9 messages per
example); the same seed and examples give the same messages, so the counts reproduce.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/reliability/test_fuzz_server.py"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fuzz_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--examples", type=int, default=1200, help="hypothesis examples (rounds)")
    p.add_argument("--seed", type=int, default=0, help="hypothesis's seed (default 0)")
    p.add_argument("--json", type=Path, help="also write the counts here")
    ns = p.parse_args(argv)
    if ns.examples < 1:
        p.error(f"--examples {ns.examples}: must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "fuzz.json"
        env = {**os.environ, "ZTFL_FUZZ_EXAMPLES": str(ns.examples),
               "ZTFL_FUZZ_REPORT": str(report)}
        argv_ = [sys.executable, "-m", "pytest", TEST, "-q", "-p", "no:cacheprovider",
                 "--hypothesis-show-statistics", f"--hypothesis-seed={ns.seed}"]
        rc = subprocess.run(argv_, cwd=ROOT, env=env, check=False).returncode
        if not report.exists():
            print(f"fuzz_server: error: the test wrote no counts (pytest rc {rc})",
                  file=sys.stderr)
            return 2
        counts = json.loads(report.read_text())
    messages = counts.get("accepted", 0) + counts.get("refused", 0)
    print(
        f"\n{counts.get('rounds', 0)} rounds ({ns.examples} examples, seed {ns.seed}), "
        f"{messages} messages: "
        f"{counts.get('accepted', 0)} accepted, {counts.get('refused', 0)} refused "
        f"(of which {counts.get('undecodable', 0)} bytes that are no Update), every refusal "
        f"logged once; {'0 crashes, 0 hangs' if rc == 0 else f'FAILED (pytest rc {rc})'}"
    )
    if ns.json:
        ns.json.write_text(json.dumps({**counts, "messages": messages, "pytest_rc": rc}, indent=1))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
