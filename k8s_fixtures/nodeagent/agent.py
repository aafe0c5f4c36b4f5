"""``python -m k8s_fixtures.nodeagent.agent``: the ztfl node agent, one per node (DaemonSet).

Once a second it lists the pods of its node (``spec.nodeName``, from ``NODE_NAME``); a pod
annotated ``ztfl.io/net-profile`` and/or ``ztfl.io/sidecar-redirect`` and not yet marked
``ztfl.io/node-agent`` gets, in its network namespace, the ``tc`` commands of its profile
(:func:`k8s_fixtures.netem.init.commands`) and its sidecar redirect rules
(:meth:`k8s_fixtures.tls.redirect.Redirect.rules`, rendered here from the annotation's ports),
then the mark ``applied`` (or ``failed: <reason>``, which the pod's wait container reports).
The pod's network namespace is found through a process of the pod: one whose cgroup path
names the pod's UID (``pod<uid>`` with the cgroupfs driver, ``pod<uid_with_underscores>`` with
systemd's), entered with ``nsenter --net=/proc/<pid>/ns/net``.

Never run here (no Kubernetes on the development machines): :func:`work` and
:func:`pod_pid` are tested offline, the loop is not.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

from k8s_fixtures.hardening import APPLIED, APPLIED_ANNOTATION
from k8s_fixtures.netem.init import commands
from k8s_fixtures.netem.profiles import NET_ANNOTATION, Profile, get_profile, load_profiles
from k8s_fixtures.nodeagent.manifests import NODE_ENV
from k8s_fixtures.tls.redirect import ANNOTATION as REDIRECT_ANNOTATION
from k8s_fixtures.tls.redirect import Redirect

Step = tuple[list[str], str | None]  # argv, its stdin


def work(annotations: Mapping[str, str], profiles: Mapping[str, Profile]) -> list[Step]:
    """What a pod's annotations ask of the node (empty: nothing). ValueError on a bad one."""
    steps: list[Step] = []
    net = annotations.get(NET_ANNOTATION)
    if net:
        steps += [(c, None) for c in commands(get_profile(net, profiles))]
    redirect = annotations.get(REDIRECT_ANNOTATION)
    if redirect:
        steps.append((["nft", "-f", "-"], Redirect.from_annotation(redirect).rules()))
    return steps


def pod_pid(uid: str, proc: str = "/proc") -> int | None:
    """A process of the pod with this UID (the lowest pid: its sandbox's), or None yet."""
    keys = (f"pod{uid}", f"pod{uid.replace('-', '_')}")
    for pid in sorted((p for p in os.listdir(proc) if p.isdigit()), key=int):
        try:
            with open(os.path.join(proc, pid, "cgroup")) as f:
                text = f.read()
        except OSError:
            continue
        if any(k in text for k in keys):
            return int(pid)
    return None


def apply(pid: int, steps: list[Step]) -> None:
    """Run the steps in the network namespace of ``pid``; RuntimeError naming a failed one."""
    for argv, stdin in steps:
        r = subprocess.run(["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv], input=stdin,
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip() or r.returncode}")


def _mark(api: Any, pod: Any, value: str) -> None:
    body = {"metadata": {"annotations": {APPLIED_ANNOTATION: value}}}
    api.patch_namespaced_pod(pod.metadata.name, pod.metadata.namespace, body)


def once(api: Any, node: str, profiles: Mapping[str, Profile], done: set[str]) -> None:
    """One pass over the node's pods (``done``: UIDs already handled)."""
    for pod in api.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items:
        uid, notes = pod.metadata.uid, pod.metadata.annotations or {}
        if uid in done or APPLIED_ANNOTATION in notes:
            continue
        try:
            steps = work(notes, profiles)
        except ValueError as exc:
            done.add(uid)
            _mark(api, pod, f"failed: {exc}")
            continue
        if not steps:
            done.add(uid)
            continue
        pid = pod_pid(uid)
        if pid is None:  # its sandbox is not up yet: next pass
            continue
        done.add(uid)
        try:
            apply(pid, steps)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            print(f"{pod.metadata.namespace}/{pod.metadata.name}: {exc}", file=sys.stderr)
            _mark(api, pod, f"failed: {exc}"[:200])
            continue
        print(f"{pod.metadata.namespace}/{pod.metadata.name}: {len(steps)} steps", flush=True)
        _mark(api, pod, APPLIED)


def main() -> int:
    k8s = importlib.import_module("kubernetes")
    k8s.config.load_incluster_config()
    api = k8s.client.CoreV1Api()
    node = os.environ[NODE_ENV]
    profiles = load_profiles()
    done: set[str] = set()
    while True:
        once(api, node, profiles, done)
        time.sleep(1.0)


if __name__ == "__main__":
    sys.exit(main())
