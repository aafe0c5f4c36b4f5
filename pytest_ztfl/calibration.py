"""A NET profile's calibration on a private link of this machine, once per results directory
(``calibration/<NET>.json``, referenced by every cell of that NET); on kind/kube none (the
pods' own tc netem shapes the links there)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from k8s_fixtures.netem.calibrate import calibrate
from k8s_fixtures.netem.profiles import Profile
from pytest_ztfl.results import atomic_write
from pytest_ztfl.warning_types import ZtflCalibrationWarning

NOT_CALIBRATED = (
    "not measured: on kind/kube each client pod's tc netem applies the profile, and a "
    "calibration here would measure this machine's links, not the cluster's"
)


def once(
    net: str,
    out: Path,
    backend: str,
    profiles: Mapping[str, Profile],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """The reference to ``net``'s calibration in ``out`` (calibrated now if it is not there)."""
    if backend != "local":
        return {"ref": None, "passed": None, "note": NOT_CALIBRATED}
    ref = f"calibration/{net}.json"
    path = out / ref
    if not path.exists():
        progress(f"calibrating {net} (once per run, stored in {ref})")
        result = calibrate(profiles[net])
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, result.to_json().encode())
        if not result.passed:
            failed = [f.name for f in result.figures if f.passed is False]
            warnings.warn(
                ZtflCalibrationWarning(
                    f"{net}: calibration misses its targets ({', '.join(failed)}); see {path}"
                ),
                stacklevel=1,
            )
    return {"ref": ref, "passed": bool(json.loads(path.read_text()).get("passed"))}
