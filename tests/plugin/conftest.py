"""Fixtures of the plugin tests (helpers live in ztfl_plugin_support.py)."""

from __future__ import annotations

import importlib

import pytest

# Every module a matrix session and these tests import (see warm_imports).
WARM = (
    "matplotlib.pyplot",
    "numpy",
    "scipy.stats",
    "fl_app.data",
    "fl_app.events",
    "k8s_fixtures.local.backend",
    "k8s_fixtures.netem.profiles",
    "pytest_ztfl.backends",
    "pytest_ztfl.cellplan",
    "pytest_ztfl.analysis.gates",
    "pytest_ztfl.matrix_tests",
    "pytest_ztfl.report",
    "pytest_ztfl.results",
    "pytest_ztfl.rows",
    "pytest_ztfl.runner",
    "pytest_ztfl.session",
    "pytest_ztfl.slo",
    "pytest_ztfl.summary_table",
)


@pytest.fixture(scope="session", autouse=True)
def warm_imports() -> None:
    """Import every module a matrix session and these tests use, once, before any pytester.

    pytester restores ``sys.modules`` after each in-process run and at the end of each test,
    dropping what was imported meanwhile. Extension modules (torch, numpy, cryptography)
    cannot be loaded twice into one interpreter, and a harness module imported anew while its
    package still holds the old one as an attribute would mix two copies of a class
    (``Verdict`` identity checks then fail). Imported here first, they survive every restore.
    """
    import matplotlib

    matplotlib.use("Agg")
    for name in WARM:
        importlib.import_module(name)
    from ztfl_plugin_support import report_synth

    report_synth()
