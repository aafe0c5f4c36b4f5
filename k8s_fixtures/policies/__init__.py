"""Kubernetes policy objects shipped as plain YAML (package so the files install as data).

``fl-netpol.yaml``: the NetworkPolicy set of SEC1/SEC3, applied unchanged by every backend in
the run namespace. Load it with :func:`policy_path` and
:func:`k8s_fixtures.netpol.parse.load_policies` (``default_namespace=<run namespace>``).
"""

from __future__ import annotations

from pathlib import Path

FL_NETPOL = "fl-netpol.yaml"


def policy_path(name: str = FL_NETPOL) -> Path:
    """The path of a shipped policy file."""
    return Path(__file__).resolve().parent / name
