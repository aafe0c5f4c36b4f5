"""Proofs of enforcement: probes that show each control of a security level is really on.

They run against a live FL namespace through the backend-neutral :class:`Cluster` API only
(``apply`` probe pods, ``exec`` probe programs, read server-side logs), so the same proofs run
on the local backend and on Kubernetes. Every proof is also run where its control is off, with
the opposite expectation (SEC0: the rogue pod *does* reach the server), which shows the probe
is able to see a hole.

* ``dns``               a client resolves ``fl-server`` (a policy that forgot DNS fails here)
* ``rogue-to-server``   a pod without the client label opens TCP to the server's gRPC port
* ``client-to-client``  a client opens TCP to another client-labelled pod

A "blocked" verdict needs positive controls taken at the same moment, or a probe that cannot
reach anything (a broken rogue) or a port nothing listens on would pass as a policy: the rogue
reaches a probe pod every policy admits (``ztfl-probe-open``), fl-client-0 reaches the server's
port, the peer's echo server answers on its own loopback. A failed control fails the proof,
naming it.
* ``no-cert-refused``   a TLS client without a certificate is refused; the reason is read from
                        the server side (gRPC's or the proxy's log), as the client only sees
                        UNAVAILABLE. Without mTLS (SEC0/SEC1) it runs expecting "accepted": a
                        plaintext client without a certificate is answered
* ``other-ca-refused``  a client with a certificate from another CA is refused, likewise
* ``wire``              (run during round 1, see :func:`judge_wire`) no plaintext model bytes
                        on the pod network, only TLS records; SEC0/SEC1: the bytes are seen

mTLS mode ``mesh`` (Linkerd) reads its mTLS verdicts from the server proxy instead:
:mod:`k8s_fixtures.proofs.mesh`.

SEC3 adds the proofs of its hardening (no token, API refused, non-root, read-only root, no
capabilities, seccomp, Pod Security admission refusing a privileged pod), from probes of the
running FL containers: :mod:`k8s_fixtures.proofs.hardening`. They run where the level claims
them only (a pod's posture outside SEC3 depends on the image and the cluster, so there is no
opposite to expect); the tests show each one failing on a SEC3 cell rendered without it.
"""

from k8s_fixtures.proofs.base import (
    CLIENT_SA,
    IDENTITY,
    IDENTITY_SA,
    NOCERT,
    OPEN,
    OPEN_INGRESS,
    PEER,
    PROBE_DIR,
    ROGUE,
    ROGUE_EGRESS,
    Proof,
    ProofPlan,
    probe_exec,
    probe_pods,
)
from k8s_fixtures.proofs.hardening import PRIVILEGED, hardening_proofs
from k8s_fixtures.proofs.mesh import mesh_proofs, mesh_round
from k8s_fixtures.proofs.run import control_proofs, judge_wire, run_proofs

__all__ = [
    "CLIENT_SA",
    "IDENTITY",
    "IDENTITY_SA",
    "NOCERT",
    "OPEN",
    "OPEN_INGRESS",
    "PEER",
    "PRIVILEGED",
    "PROBE_DIR",
    "ROGUE",
    "ROGUE_EGRESS",
    "Proof",
    "ProofPlan",
    "control_proofs",
    "hardening_proofs",
    "judge_wire",
    "mesh_proofs",
    "mesh_round",
    "probe_exec",
    "probe_pods",
    "run_proofs",
]
