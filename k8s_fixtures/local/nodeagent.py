"""The local backend's node agent: installs a pod's sidecar redirect from the node.

A restricted (SEC3) pod may hold no ``NET_ADMIN`` container, so its sidecar redirect comes
from the node, asked for by the annotation ``ztfl.io/sidecar-redirect``
(:mod:`k8s_fixtures.tls.redirect`; on Kubernetes the ztfl node agent does the same). This
overlay renders the rules from the annotation's ports and uid (never rule text from the pod)
and installs them in the pod's network namespace when the pod is created, before any of its
processes starts, as the NET overlay shapes its link. A bad annotation refuses the pod.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

from k8s_fixtures.cluster import ManifestError, Obj
from k8s_fixtures.local.view import ClusterView
from k8s_fixtures.tls.redirect import ANNOTATION, Redirect

if TYPE_CHECKING:
    from k8s_fixtures.local.backend import LocalCluster


class NodeAgentOverlay:
    """Registered with ``LocalCluster.add_overlay``; realises the redirect annotation."""

    kinds: Collection[str] = ()

    def __init__(self) -> None:
        self.installed: dict[str, str] = {}  # pod netns -> the rules installed there

    def validate(self, obj: Obj) -> None:  # no object kinds of its own
        return None

    def sync(self, cluster: LocalCluster, view: ClusterView) -> None:
        live = {p.netns for p in view.pods}
        self.installed = {ns: r for ns, r in self.installed.items() if ns in live}
        for p in view.pods:
            text = p.annotations.get(ANNOTATION)
            if text is None or p.netns in self.installed:
                continue
            try:
                rules = Redirect.from_annotation(text).rules()
            except ValueError as exc:
                raise ManifestError(
                    f"Pod {p.key}: metadata.annotations[{ANNOTATION}]: {exc}") from None
            cluster.run(["ip", "netns", "exec", p.netns, "nft", "-f", "-"], input=rules)
            self.installed[p.netns] = rules

    def close(self, cluster: LocalCluster) -> None:
        """Nothing outside the pods' namespaces (the rules go with them)."""
        self.installed.clear()
