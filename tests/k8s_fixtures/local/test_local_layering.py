"""k8s_fixtures starts the workload by command line: it imports neither fl_app nor pytest."""

from __future__ import annotations

import subprocess
import sys


def test_backend_imports_no_workload_and_no_pytest() -> None:
    code = ("import sys, k8s_fixtures.local.backend, k8s_fixtures.local.cli, "
            "k8s_fixtures.manifests, k8s_fixtures.cluster\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('fl_app', 'pytest', '_pytest', 'pytest_ztfl'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == ""
