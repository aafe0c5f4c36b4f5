"""``python -m k8s_fixtures.netem.init PROFILE``: shape this pod's link with tc (Kubernetes only).

Run by the ``ztfl-netem-init`` init container (NET_ADMIN) of each client pod, inside the pod's
network namespace, before the workload starts. ``up`` (client -> server) is netem (+ tbf for
rate) at the root of ``eth0``; ``down`` (server -> client) is the same on an ifb device that
receives ``eth0``'s ingress (``mirred`` redirect), because a pod cannot reach the node side of
its veth. Commands are rendered by :mod:`.tc` (the local backend's renderer, minus ``-n``).

Exit status: 0 applied (or nothing to do for a null profile), 2 bad profile, 3 the node kernel
lacks netem/ifb (the message says ``modprobe sch_netem ifb``), 4 any other tc failure. The last
line on stdout is a JSON summary; failures show as ``Init:Error`` (class ``netem``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from .profiles import Profile, ProfileError, get_profile, load_profiles
from .tc import Hop, render_netem

IFB = "ifb-ztfl"


def _local(cmds: list[list[str]]) -> list[list[str]]:
    # tc.render_* address a named namespace (``tc -n NS ...``); here we are inside the pod.
    return [[c[0], *c[3:]] if c[1:2] == ["-n"] else c for c in cmds]


def commands(profile: Profile, dev: str = "eth0", ifb: str = IFB) -> list[list[str]]:
    """Every command that realises ``profile`` on this pod's ``dev`` (empty for NET0)."""
    cmds = _local(render_netem(profile, "up", Hop("-", dev)))
    down = _local(render_netem(profile, "down", Hop("-", ifb)))
    if down:
        cmds += [["ip", "link", "add", ifb, "type", "ifb"],
                 ["ip", "link", "set", ifb, "up"],
                 ["tc", "qdisc", "replace", "dev", dev, "handle", "ffff:", "ingress"],
                 ["tc", "filter", "replace", "dev", dev, "parent", "ffff:", "protocol", "all",
                  "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect",
                  "dev", ifb],
                 *down]
    return cmds


def _missing_kernel_feature(stderr: str) -> bool:
    s = stderr.lower()
    return ("unknown" in s and ("qdisc" in s or "type" in s)) or "not supported" in s \
        or "no such file" in s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m k8s_fixtures.netem.init", description=__doc__)
    ap.add_argument("profile")
    ap.add_argument("--dev", default="eth0")
    ap.add_argument("--profiles-file", default=None)
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    a = ap.parse_args(argv)
    try:
        prof = get_profile(a.profile, load_profiles(a.profiles_file))
    except (ProfileError, OSError) as e:
        print(f"netem init: {e}", file=sys.stderr)
        return 2
    cmds = commands(prof, a.dev)
    for c in cmds:
        print(" ".join(c), flush=True)
        if a.dry_run:
            continue
        r = subprocess.run(c, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            err = r.stderr.strip() or f"rc {r.returncode}"
            if _missing_kernel_feature(err):
                print(f"netem init: {' '.join(c)}: {err}: the node kernel lacks netem/ifb "
                      "(run `modprobe sch_netem ifb` on the nodes)", file=sys.stderr)
                return 3
            print(f"netem init: {' '.join(c)}: {err}", file=sys.stderr)
            return 4
    print(json.dumps({"profile": prof.name, "dev": a.dev, "commands": len(cmds),
                      "applied": not a.dry_run}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
