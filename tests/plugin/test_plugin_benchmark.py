"""The matrix tests as pytest-benchmark records: node ids and benchmark names that do not
depend on where the plugin is installed or where pytest runs, so two runs' records pair up in
``pytest-benchmark compare`` and ``--benchmark-compare`` (keyed by node id).

Two runs of the same stored results from two different root directories (as a dev checkout
and a user project differ) must give the same node ids, and ``pytest-benchmark compare`` must
show every cell with both runs side by side.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ztfl_plugin_support import REPO, VENV_BIN, Tripwire, apply_env, report_synth, subprocess_env

from pytest_ztfl import matrix as mx

pytest_plugins = ("pytester",)

SMALL = """\
name: bench
sec: [SEC0, SEC3]
net: [NET0]
data: [iid]
seeds: [0, 1]
workload: {clients: 3, rounds: 8, eval_every: 4}
"""


def test_two_runs_from_different_places_pair_up_in_compare(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    matrix = tmp_path / "bench.yaml"
    matrix.write_text(SMALL)
    out = tmp_path / "out"
    report_synth().build_results(out, mx.load(str(matrix)))
    apply_env(monkeypatch, subprocess_env(data_dir, tmp_path / "state"))
    wire = Tripwire(monkeypatch)
    records = []
    # the dev checkout (the plugin's file inside the rootdir) and a user project (outside it)
    for where, root in (("checkout", REPO), ("project", pytester.mkdir("project"))):
        monkeypatch.chdir(root)
        bench = tmp_path / f"{where}.json"
        result = pytester.runpytest_inprocess(
            f"--rootdir={root}", f"--ztfl-matrix={matrix}", f"--ztfl-out={out}",
            "--ztfl-resume", f"--benchmark-json={bench}", "-p", "no:cacheprovider", "-v",
        )  # fmt: skip
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        result.stdout.re_match_lines([r"ztfl::test_fl\[SEC3-NET0-iid-s1\] PASSED"])
        records.append(json.loads(bench.read_text()))
    assert wire.calls == []
    for r in records:  # the run's backend and NET mechanism, and each cell as its fields
        assert r["machine_info"]["ztfl"]["backend"] == "local"
        assert r["machine_info"]["ztfl"]["net_mechanism"]
        for bench in r["benchmarks"]:
            assert bench["params"]["ztfl_cell"]["id"] == bench["param"]
    names = [sorted(b["fullname"] for b in r["benchmarks"]) for r in records]
    assert names[0] == names[1] == sorted(
        f"ztfl::test_fl[{c.id}]" for c in mx.load(str(matrix)).cells()
    )
    res = subprocess.run(
        [str(VENV_BIN / "pytest-benchmark"), "compare", str(tmp_path / "checkout.json"),
         str(tmp_path / "project.json"), "--group-by=fullname"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    for cell in ("SEC0-NET0-iid-s0", "SEC3-NET0-iid-s1"):
        # one group per cell (its title names it), holding both runs' rows
        group = res.stdout.split(f"benchmark 'ztfl::test_fl[{cell}]'")[1].split("benchmark '")[0]
        rows = [line for line in group.splitlines() if f"test_fl[{cell}]" in line]
        assert len(rows) == 2, (cell, res.stdout)
