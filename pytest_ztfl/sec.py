"""The security levels, as one vocabulary: which controls each level has.

``Sec`` is a ``StrEnum``: a level compares, hashes and serialises as its name ("SEC2"), so
rows, matrix files and cell ids keep their text while code asks ``Sec(level).mtls`` instead of
spelling out which levels have mTLS.
"""

from __future__ import annotations

from enum import StrEnum


class Sec(StrEnum):
    SEC0 = "SEC0"  # no control: the baseline every other level is compared with
    SEC1 = "SEC1"  # NetworkPolicy micro-segmentation
    SEC2 = "SEC2"  # mutual TLS
    SEC3 = "SEC3"  # both, in a hardened workload (the seed study's: + RBAC + Pod Security)

    @property
    def netpol(self) -> bool:
        return self in (Sec.SEC1, Sec.SEC3)

    @property
    def mtls(self) -> bool:
        return self in (Sec.SEC2, Sec.SEC3)

    @property
    def restricted(self) -> bool:
        """The workload hardened as the seed study's SEC3 (Sec. VI-A: mTLS + NetworkPolicy +
        RBAC + PodSecurity): ServiceAccounts without a token or API rights, pods non-root with
        a read-only root, no capabilities, no privilege escalation, seccomp RuntimeDefault, in
        a namespace whose Pod Security level is ``restricted``."""
        return self is Sec.SEC3

    @property
    def baseline(self) -> bool:
        return self is Sec.SEC0


SEC_LEVELS = tuple(s.value for s in Sec)
