"""What each security level's proofs must show (the tests' own statement, independent of the
code that sets the proofs' expectations): shared by the plugin and integration tests."""

OPEN = {"dns": "resolves", "rogue-to-server": "open", "client-to-client": "open"}
BLOCKED = {"dns": "resolves", "rogue-to-server": "blocked", "client-to-client": "blocked"}
REFUSED = {"no-cert-refused": "refused", "other-ca-refused": "refused"}
ACCEPTED = {"no-cert-refused": "accepted"}  # mTLS off: the probe sees the hole
# SEC3's hardening, where no API server is seen (the local backend; Kubernetes adds
# "api-refused": "refused")
HARDENED = {"no-token": "absent", "non-root": "non-root", "read-only-root": "read-only",
            "no-capabilities": "none", "seccomp": "filtered", "psa-restricted": "refused"}
EXPECTED = {
    "SEC0": {**OPEN, **ACCEPTED},
    "SEC1": {**BLOCKED, **ACCEPTED},
    "SEC2": {**OPEN, **REFUSED},
    "SEC3": {**BLOCKED, **REFUSED, **HARDENED},
}
