"""The local backend: a Kubernetes-shaped cluster made of network namespaces on one machine.

Entry point: :class:`k8s_fixtures.local.backend.LocalCluster` (implements
:class:`k8s_fixtures.cluster.Cluster`). Supported objects, a documented subset; anything else
is refused at ``apply`` with ``Kind ns/name: field: reason`` and nothing is created:

* ``v1 Namespace`` - gets the automatic ``kubernetes.io/metadata.name`` label.
* ``v1 Pod`` - containers are process trees in the pod's network namespace, started from
  ``command`` + ``args`` (required: there are no images, ``image`` is ignored); ``env`` with
  ``value`` or ``valueFrom.secretKeyRef/configMapKeyRef``; ``ports`` (names kept, for
  NetworkPolicy); ``resources.limits.cpu/memory`` (cgroups, root only); ``volumeMounts`` of
  ``configMap``/``secret``/``emptyDir`` volumes (contents fixed at pod start, no ``subPath``);
  ``workingDir``; ``readinessProbe`` with ``tcpSocket`` or ``exec``; ``restartPolicy``;
  ``terminationGracePeriodSeconds`` (default 5 s); ``metadata.annotations`` (kept, handed to
  overlays in :class:`.view.PodInfo`). ``initContainers`` run one at a time, in order, each to
  exit 0, before any regular container starts (a failure is retried with back-off, or with
  ``restartPolicy: Never`` fails the pod: status ``Init:Error``). All containers of a pod share
  its network namespace and volumes; each has its own mount namespace, which ``exec`` enters.
  ``securityContext`` is checked for shape and otherwise ignored: containers run as root with
  the harness's capabilities, nothing is dropped (so ``capabilities.add: [NET_ADMIN]`` holds
  trivially, and a pod is *not* confined the way a restricted Kubernetes pod is). Not
  supported: liveness probes, sidecar-style init containers (``restartPolicy`` on a
  container), hostNetwork, PVCs.
* ``apps/v1 Deployment`` - ``replicas`` pods with stable names ``<name>-0 .. <name>-<n-1>`` and
  the template's labels; re-applying scales, a changed template recreates the pods.
* ``batch/v1 Job`` - one pod ``<name>-0`` (completions = parallelism = 1; no backoffLimit).
* ``v1 Service`` (ClusterIP) - ``<svc>.<ns>.svc.cluster.local`` with one A record per selected
  pod (headless-style; no virtual IP, ``ports`` are not remapped: connect to the pod port).
* ``v1 ConfigMap``, ``v1 Secret`` (``data`` base64, ``stringData``), ``v1 ServiceAccount``
  (recorded only).
* Kinds an overlay registers (``NetworkPolicy`` by the NetworkPolicy enforcer): stored and
  handed to it; refused while no overlay handles them.

Modules: topology (namespaces, bridge, veths), pods (process supervisor), launch (in-pod
launcher), cgroups, dns (dnsmasq pod), volumes, admission (checks and plans), view (overlay
hook), state (state directory and stale-cluster cleanup), privileges (root / rootless), backend.
"""
