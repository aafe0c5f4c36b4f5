"""Helpers for the plugin tests: pytester runs of the ztfl plugin, cluster tripwires, leak checks,
and stored results synthesised with the report tests' generator (tests/report/report_synth.py).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CELL_ID = re.compile(r"::(test_fl\[[^\]]+\])")


def report_synth() -> ModuleType:
    """tests/report/report_synth.py, imported once under its own name (shared, not copied)."""
    mod = sys.modules.get("report_synth")
    if mod is not None:
        return mod
    path = REPO / "tests" / "report" / "report_synth.py"
    spec = importlib.util.spec_from_file_location("report_synth", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["report_synth"] = mod
    spec.loader.exec_module(mod)
    return mod


def collected_ids(lines: list[str]) -> list[str]:
    """``test_fl[...]`` ids from ``--collect-only -q`` output, in order."""
    return [m.group(1) for line in lines if (m := CELL_ID.search(line))]


def error_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("ERROR:")]


def ztfl_netns() -> set[str]:
    """The network namespaces whose names start with ``ztfl-`` (a local cluster's)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return {line.split()[0] for line in out.stdout.splitlines() if line.startswith("ztfl-")}


def cluster_dirs(root: Path) -> list[str]:
    """Cluster records under a local backend state root (k8s_fixtures.local.state)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir())


class Tripwire:
    """Records any attempt to create a cluster or run a cell in this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        from k8s_fixtures.local import backend as local_backend
        from pytest_ztfl import backends, runner

        def trip(name: str) -> Any:
            def fail(*_a: Any, **_k: Any) -> Any:
                self.calls.append(name)
                raise AssertionError(f"{name} called: the test expected no cluster")

            return fail

        monkeypatch.setattr(backends, "create", trip("backends.create"))
        monkeypatch.setattr(local_backend.LocalCluster, "start", trip("LocalCluster.start"))
        monkeypatch.setattr(runner, "run_cell", trip("runner.run_cell"))
        monkeypatch.setattr(runner, "run_block", trip("runner.run_block"))


def subprocess_env(data_dir: Path, state_root: Path | None = None) -> dict[str, str]:
    """Environment for pytester runs: the data, and optionally a private state root."""
    env = {"ZTFL_DATA_DIR": str(data_dir)}
    if state_root is not None:
        env["ZTFL_STATE_DIR"] = str(state_root)
    return env


def apply_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def events_of(path: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_jsonl(path) if e.get("event") == kind]


def venv_script(name: str) -> str:
    path = VENV_BIN / name
    assert path.exists(), f"{path}: not installed in this environment"
    return str(path)


def backend_cluster_name(lines: list[str]) -> str | None:
    """The local cluster's name from the ztfl summary (``backend: local (root, cluster X)``)."""
    for line in lines:
        m = re.search(r"cluster (ztfl-[0-9a-f]+)\)", line)
        if m:
            return m.group(1)
    return None
