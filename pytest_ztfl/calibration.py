"""A NET profile's calibration on a private link of this machine, once per session (sitting)
that measures its cells: ``calibration/<NET>.json``, and ``<NET>.2.json``, ``<NET>.3.json`` ...
for the later sittings of a resumed run, so each is checked on the machine as it was when its
cells ran, and every row references the calibration it was measured against. On kind/kube none
(the pods' own tc netem shapes the links there)."""

from __future__ import annotations

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
    """``net`` calibrated now, into the first free name in ``out/calibration/``; its reference
    for the rows (the session asks once per profile)."""
    if backend != "local":
        return {"ref": None, "passed": None, "note": NOT_CALIBRATED}
    path = free_name(out / "calibration", net)
    ref = f"calibration/{path.name}"
    progress(f"calibrating {net} (once per sitting, stored in {ref})")
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
    return {"ref": ref, "passed": bool(result.passed)}


def free_name(where: Path, net: str) -> Path:
    """``<NET>.json`` if no earlier sitting holds it, else ``<NET>.<k>.json`` (k = 2, 3 ...)."""
    path, k = where / f"{net}.json", 1
    while path.exists():
        k += 1
        path = where / f"{net}.{k}.json"
    return path
