"""NetworkPolicy (SEC1/SEC3): a pure evaluator, an nftables compiler, and real-kernel probes.

Modules, one job each:

* :mod:`.model` typed inputs (cluster view, pods, namespaces, policies);
* :mod:`.parse` policies from dicts/YAML, with one-line errors naming object and field;
* :mod:`.evaluator` allow/deny of a flow, egress at the source and ingress at the destination;
* :mod:`.lint` warnings (selectors that match nothing, unknown named ports);
* :mod:`.nft` per-pod nftables rulesets, applied atomically (:class:`Enforcer` keeps them synced);
* :mod:`.overlay` the local backend's NetworkPolicy overlay (:class:`NetpolOverlay`);
* :mod:`.e2emodel` the upstream e2e model (x, y, z / a, b, c) as data;
* :mod:`.truthtable` expected/observed reachability tables;
* :mod:`.agent` the per-pod server+prober process; :mod:`.probe` runs the model on namespaces;
* :mod:`.cli` ``ztfl netpol probe``.
"""

from k8s_fixtures.netpol.evaluator import Decision, Verdict, evaluate
from k8s_fixtures.netpol.model import (
    ClusterView,
    ContainerPort,
    Flow,
    Namespace,
    NetworkPolicy,
    Pod,
)
from k8s_fixtures.netpol.nft import DenyAction, Enforcer, compile_cluster
from k8s_fixtures.netpol.parse import PolicyError, load_policies, parse_policy

__all__ = [
    "ClusterView",
    "ContainerPort",
    "Decision",
    "DenyAction",
    "Enforcer",
    "Flow",
    "Namespace",
    "NetworkPolicy",
    "Pod",
    "PolicyError",
    "Verdict",
    "compile_cluster",
    "evaluate",
    "load_policies",
    "parse_policy",
]
