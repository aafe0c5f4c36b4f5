"""The ztfl node agent (Kubernetes): what a restricted pod may not do for itself, done from the
node (see :mod:`k8s_fixtures.hardening`).

* :mod:`.agent`: the DaemonSet's program. For every pod on its node annotated
  ``ztfl.io/net-profile`` or ``ztfl.io/sidecar-redirect`` and not yet marked, it finds the pod's
  network namespace (a process whose cgroup names the pod's UID; the agent runs with the
  host's PID namespace), runs there the ``tc`` commands of :mod:`k8s_fixtures.netem.init` and
  the nft rules of :mod:`k8s_fixtures.tls.redirect`, then marks the pod
  ``ztfl.io/node-agent: applied``;
* :mod:`.wait`: the pod's first init container (non-root, no capabilities): waits for that
  mark in its downward API volume, so the workload starts on a shaped, redirected link;
* :mod:`.manifests`: the agent's objects (namespace ``ztfl-system``, labelled Pod Security
  ``privileged``; its ServiceAccount, ClusterRole, binding and DaemonSet), also written to
  ``deploy/node-agent.yaml`` for ``kubectl apply``.
"""
