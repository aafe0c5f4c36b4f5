"""perf's sampling switched on and off around what is measured (cpusplit.PerfRecord, the real
perf): a process that burns CPU inside the window is sampled, those before and after are not,
and nothing is left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter

import pytest

from k8s_fixtures.netem.cpusplit import PerfRecord

pytestmark = [pytest.mark.privileged]

BURN_S = 0.3


def _burn() -> subprocess.Popen[bytes]:
    code = f"import time\nt = time.process_time()\nwhile time.process_time() - t < {BURN_S}: pass"
    return subprocess.Popen([sys.executable, "-c", code])


def test_only_the_enabled_window_is_sampled() -> None:
    if shutil.which("perf") is None:
        why = "perf is not installed (run scripts/bootstrap: Debian linux-perf)"
        if os.environ.get("ZTFL_REQUIRE_PRIVILEGED") == "1":
            pytest.fail(f"ZTFL_REQUIRE_PRIVILEGED=1 but {why}", pytrace=False)
        pytest.skip(why)
    with PerfRecord(freq=999) as perf:
        before = _burn()
        before.wait()
        perf.enable()
        inside = _burn()
        inside.wait()
        perf.disable()
        after = _burn()
        after.wait()
        samples = Counter(s.pid for s in perf.stacks())
    assert samples[before.pid] == 0 and samples[after.pid] == 0, samples
    # 0.3 s of CPU at 999 Hz: ~300 samples; half of it allows for a loaded machine's sharing
    assert samples[inside.pid] >= BURN_S * 999 / 2, samples[inside.pid]
    assert perf.workdir is not None and not perf.workdir.exists()
