"""report.md's *Run metadata*: the matrix, the backend, the overlays' mechanisms, the NET
calibration, the machine and the versions, the run window."""

from __future__ import annotations

from typing import Any

from pytest_ztfl.report.calc import Analysis
from pytest_ztfl.report.fmt import table
from pytest_ztfl.report.md.common import calibrations, distinct, source, utc

ENV_KEYS = ("git_commit", "hostname", "kernel", "os", "python", "cpus", "cpu_model", "memory_bytes")


def _resources_text(res: dict[str, Any]) -> str:
    """``workload.resources`` in one line: ``server requests cpu=500m memory=512Mi, limits
    cpu=1; client limits memory=1Gi``."""
    roles = []
    for role, kinds in sorted(res.items()):
        parts = [f"{kind} " + " ".join(f"{n}={v}" for n, v in sorted(q.items()))
                 for kind, q in sorted(kinds.items(), reverse=True)]  # requests before limits
        roles.append(f"{role} {', '.join(parts)}")
    return "; ".join(roles)


def _matrix_rows(a: Analysis) -> list[tuple[str, str]]:
    m, loaded = a.loaded.matrix, a.loaded
    present = {r.id for r in loaded.runs}
    out: list[tuple[str, str]] = []
    if m is not None and loaded.expected is not None:
        wl = m.get("workload", {})
        out.append(
            (
                "matrix",
                f"{m.get('name', '?')}: SEC {', '.join(m.get('sec', []))}; "
                f"NET {', '.join(m.get('net', []))}; data {', '.join(m.get('data', []))}; "
                f"seeds {', '.join(map(str, m.get('seeds', [])))}; "
                f"mTLS modes {', '.join(m.get('mtls', []))}",
            )
        )
        out.append(("workload", ", ".join(f"{k}={v}" for k, v in sorted(wl.items())
                                          if k != "resources")))
        if isinstance(wl.get("resources"), dict):
            out.append(("resources", _resources_text(wl["resources"])))
        missing = [c for c in loaded.expected if c not in present]
        extra = sorted(present - set(loaded.expected))
        text = f"{len(loaded.expected) - len(missing)} of {len(loaded.expected)} have a result"
        if missing:
            text += f"; without a usable result: {', '.join(missing)}"
        if extra:
            text += f"; not in matrix.json: {', '.join(extra)}"
        out.append(("cells", text))
    else:
        out.append(("cells", f"{len(loaded.runs)} with a result (matrix.json unusable)"))
    return out


def metadata(a: Analysis) -> list[str]:
    runs = a.loaded.runs
    rows = _matrix_rows(a)
    rows.append(
        (
            "backend",
            distinct(
                f"{r.backend or '?'}" + (f" ({r.backend_note})" if r.backend_note else "")
                for r in runs
            ),
        )
    )
    rows.append(("cells measured at once", distinct(r.parallel or 1 for r in runs)))
    rows.append(("NET emulation", distinct(r.net_mechanism for r in runs)))
    rows.append(("NET calibration", calibrations(runs)))
    rows.append(("NetworkPolicy", distinct(r.netpol_action for r in runs)))
    rows.append(("mTLS", distinct(r.mtls_mode for r in runs)))
    for key in ENV_KEYS:
        values = [r.environment.get(key) for r in runs]
        if key == "memory_bytes":
            values = [f"{v} ({v / 2**30:.1f} GiB)" if isinstance(v, int) else v for v in values]
        label = "git commit (pytest-ztfl)" if key == "git_commit" else key.replace("_", " ")
        rows.append((label, distinct(values)))
    projects = [r.environment.get("project") for r in runs]
    if any(isinstance(p, dict) for p in projects):
        rows.append(("project (rootdir @ git commit)", distinct(
            f"{p.get('rootdir')} @ {p.get('git_commit')}" if isinstance(p, dict) else None
            for p in projects)))  # fmt: skip
    versions: dict[str, list[Any]] = {}
    for r in runs:
        v = r.environment.get("versions")
        if isinstance(v, dict):
            for pkg, ver in v.items():
                versions.setdefault(pkg, []).append(ver)
    if versions:
        rows.append(
            ("versions", "; ".join(f"{p} {distinct(vs)}" for p, vs in sorted(versions.items())))
        )
    starts = [r.started_wall for r in runs if r.started_wall is not None]
    ends = [r.finished_wall for r in runs if r.finished_wall is not None]
    rows.append(
        (
            "run window",
            f"{utc(min(starts) if starts else None)} to {utc(max(ends) if ends else None)}",
        )
    )
    return [
        f"Source: `matrix.json` and the `environment`, `backend`, `overlays` fields of "
        f"{source(a)}; n = {len(runs)} rows.",
        "",
        *table(("", "value"), rows),
    ]
