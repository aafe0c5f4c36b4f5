"""``python -m k8s_fixtures.nodeagent.wait``: wait until the node agent has marked this pod.

The first init container of a restricted pod that needs the node's work (its NET profile, its
sidecar redirect). It reads the pod's annotations from a downward API volume (the kubelet
rewrites the file when they change) until ``--key`` has ``--value``; exit 0 then, 1 after
``--timeout`` seconds with the reason (is the node agent installed?). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def parse_annotations(text: str) -> dict[str, str]:
    """The downward API's ``key="value"`` lines (values quoted as Go quotes them)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        try:
            out[key] = json.loads(value) if value.startswith('"') else value
        except json.JSONDecodeError:
            out[key] = value.strip('"')
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m k8s_fixtures.nodeagent.wait",
                                 description=__doc__)
    ap.add_argument("--annotations", required=True, help="the downward API file")
    ap.add_argument("--key", required=True)
    ap.add_argument("--value", required=True)
    ap.add_argument("--what", default="", help="what the agent does here (for messages)")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--interval", type=float, default=0.5)
    a = ap.parse_args(argv)
    deadline = time.monotonic() + a.timeout
    seen = None
    while True:
        try:
            with open(a.annotations) as f:
                seen = parse_annotations(f.read()).get(a.key)
        except OSError as e:
            seen = f"<{e.strerror}>"
        if seen == a.value:
            print(f"node agent: {a.key}={a.value} ({a.what})", flush=True)
            return 0
        if seen is not None and seen.startswith("failed"):
            print(f"node agent: {a.key}: {seen} ({a.what})", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            print(f"node agent: {a.key} is {seen!r}, not {a.value!r}, after {a.timeout:g} s: "
                  f"nothing did this pod's {a.what or 'node work'} (is the ztfl node agent "
                  "installed? kubectl apply -f deploy/node-agent.yaml)", file=sys.stderr)
            return 1
        time.sleep(a.interval)


if __name__ == "__main__":
    sys.exit(main())
