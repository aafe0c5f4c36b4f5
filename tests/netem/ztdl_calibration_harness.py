"""A harness stand-in run as a subprocess by the calibration cleanup test: calibrate NET1 on a
recorded private topology with a loss sample that takes minutes, so the test can SIGKILL it
while its namespaces, probe server, delay line and probe client all exist.

Usage: python ztdl_calibration_harness.py STATE_ROOT PREFIX
"""

from __future__ import annotations

import sys
from pathlib import Path

from k8s_fixtures.netem.calibrate import Sizes, calibrate
from k8s_fixtures.netem.profiles import get_profile


def main() -> None:
    root, prefix = Path(sys.argv[1]), sys.argv[2]
    # 100 s of loss probes (under run_probe's 120 s timeout): the test kills it long before.
    calibrate(get_profile("NET1"), prefix=prefix, state_root=root,
              sizes=Sizes(loss_n=200_000, loss_interval_ms=0.5))


if __name__ == "__main__":
    main()
