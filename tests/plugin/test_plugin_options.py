"""Option parsing and bad input: each mistake is a usage error (exit 4) with one readable line
naming the option or matrix field, raised before any cluster exists; ini settings work and the
command line wins.

Most cases are in-process pytester runs with tripwires on cluster creation and a private state
root (fast, no root). Other harnesses on this machine create ``ztfl-*`` namespaces at any time,
so "no new namespace" is checked race-free in a sandbox: real pytest processes in a private
mount namespace with their own empty ``/run/netns`` (privileged).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ztfl_plugin_support import (
    Tripwire,
    apply_env,
    cluster_dirs,
    collected_ids,
    error_lines,
    report_synth,
    subprocess_env,
)

pytest_plugins = ("pytester",)

SEC01 = """\
name: sec01
sec: [SEC0, SEC1]
net: [NET0]
data: [iid]
seeds: [0]
workload: {clients: 2, rounds: 2}
"""


@pytest.fixture
def guarded(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> Iterator[Tripwire]:
    """Tripwires on cluster creation, a private state root, and a namespace check afterwards."""
    state_root = tmp_path / "state"
    apply_env(monkeypatch, subprocess_env(data_dir, state_root))
    wire = Tripwire(monkeypatch)
    yield wire
    assert wire.calls == [], f"a cluster was being created: {wire.calls}"
    assert cluster_dirs(state_root) == [], "a local cluster recorded state"


def _usage_error(pytester: pytest.Pytester, *args: str) -> str:
    result = pytester.runpytest_inprocess(*args, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    errors = error_lines(result.errlines)
    assert len(errors) == 1, result.errlines
    assert "Traceback" not in result.stderr.str()
    return errors[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--ztfl-matrix=quik"], "--ztfl-matrix=quik: not a preset"),
        (["--ztfl-matrix=nothere.yaml"], "matrix nothere.yaml: No such file"),
        (["--ztfl-matrix=smoke", "--ztfl-seeds=x"], "--ztfl-seeds=x"),
        (["--ztfl-matrix=smoke", "--ztfl-seeds=3-1"], "--ztfl-seeds=3-1"),
        (["--ztfl-matrix=smoke", "--ztfl-rounds=0"], "--ztfl-rounds=0: must be between"),
        (["--ztfl-matrix=smoke", "--ztfl-parallel=0"], "--ztfl-parallel=0: must be between"),
        (["--ztfl-matrix=smoke", "--ztfl-parallel=two"], "--ztfl-parallel=two: expected"),
        (["--ztfl-matrix=smoke", "--ztfl-retries=11"], "--ztfl-retries=11: must be between"),
        (
            ["--ztfl-matrix=smoke", "--ztfl-parallel=2", "--ztfl-backend=local"],
            "--ztfl-parallel=2: on the local backend parallel blocks share one machine's CPUs",
        ),
        (["--ztfl-matrix=smoke", "--ztfl-clients=many"], "--ztfl-clients=many: expected"),
        (["--ztfl-matrix=smoke", "--ztfl-model=huge"], "workload.model='huge'"),
        (["--ztfl-matrix=smoke", "--ztfl-backend=nope"], "--ztfl-backend=nope: expected one of"),
        (["--ztfl-matrix=smoke", "--ztfl-mtls=both"], "--ztfl-mtls=both"),
        (["--ztfl-matrix=smoke", "--ztfl-slo-failure-rate=1"], "--ztfl-slo-failure-rate=1"),
        (["--ztfl-matrix=smoke", "--ztfl-slo-overhead-tail=0.5"], "--ztfl-slo-overhead-tail=0.5"),
        (["--ztfl-matrix=smoke", "--ztfl-interleave=pairs"], "--ztfl-interleave=pairs"),
        (["--ztfl-matrix=smoke", "--ztfl-order-seed=x"], "--ztfl-order-seed=x"),
        (["--ztfl-matrix=smoke", "--ztfl-checks=ab"], "checks[0]='ab'"),
        (["--ztfl-matrix=smoke", "--ztfl-checks=delay0ms"], "checks[0]='delay0ms'"),
        (["--ztfl-matrix=smoke", "--ztfl-baseline=nowhere"], "--ztfl-baseline=nowhere"),
        (["--ztfl-matrix=smoke", "--ztfl-net-profiles=none.yaml"], "--ztfl-net-profiles=none"),
        (
            ["--ztfl-matrix=smoke", "--ztfl-faults=mtls-expired"],
            "--ztfl-faults: fault mtls-expired fits no cell of matrix smoke (fault mtls-expired "
            "needs SEC2/SEC3 with native mTLS)",
        ),
        (
            ["--ztfl-matrix=smoke", "--ztfl-faults=none,client-oom", "--ztfl-clients=1"],
            "fault client-oom hits fl-client-1: needs at least 2 clients",
        ),
    ],
)
def test_bad_option_is_a_usage_error(
    pytester: pytest.Pytester, guarded: Tripwire, args: list[str], expected: str
) -> None:
    line = _usage_error(pytester, *args)
    assert expected in line, line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sec: [SEC0\nnet: [NET0]\n", "line 2: malformed YAML"),
        ("- SEC0\n- SEC1\n", "a matrix must be a mapping"),
        (SEC01.replace("seeds: [0]", "seeds: zero"), "field 'seeds'"),
        (SEC01.replace("sec:", "secs:"), "unknown field 'secs'"),
        (SEC01.replace("rounds: 2", "rounds: ten"), "workload.rounds='ten': expected int"),
        (SEC01.replace("rounds: 2", "round: 2"), "unknown field 'workload.round'"),
        (SEC01.replace("[SEC0, SEC1]", "[SEC0, SEC9]"), "sec[1]='SEC9'"),
        (SEC01.replace("[iid]", "[dirichlet-0]"), "data[0]='dirichlet-0'"),
        (SEC01.replace("[NET0]", "[NET0, NET9]"), "net[1]='NET9': no such network profile"),
        (
            SEC01.replace("rounds: 2}", "rounds: 2, resources: {client: {limits: {cpu: abc}}}}"),
            "workload.resources.client.limits.cpu='abc': not a CPU quantity (e.g. 500m, 0.5, 2)",
        ),
    ],
    ids=[
        "syntax",
        "not-a-mapping",
        "seeds-type",
        "unknown-field",
        "workload-type",
        "workload-unknown",
        "sec-value",
        "data-value",
        "net-profile",
        "resources-quantity",
    ],
)
def test_malformed_matrix_file_is_a_usage_error(
    pytester: pytest.Pytester, guarded: Tripwire, text: str, expected: str
) -> None:
    path = pytester.path / "m.yaml"
    path.write_text(text)
    line = _usage_error(pytester, f"--ztfl-matrix={path}")
    assert f"matrix {path}" in line and expected in line, line


def test_mtls_mode_without_an_mtls_cell_is_a_usage_error(
    pytester: pytest.Pytester, guarded: Tripwire
) -> None:
    path = pytester.path / "sec01.yaml"
    path.write_text(SEC01)
    line = _usage_error(pytester, f"--ztfl-matrix={path}", "--ztfl-mtls=native")
    assert "--ztfl-mtls=native" in line and "no SEC2/SEC3 cell" in line, line


def test_mesh_cells_on_the_local_backend_named_explicitly_are_a_usage_error(
    pytester: pytest.Pytester, guarded: Tripwire
) -> None:
    line = _usage_error(
        pytester, "--ztfl-matrix=smoke", "--ztfl-mtls=mesh", "--ztfl-backend=local"
    )
    assert line == (
        "ERROR: mtls=mesh: needs Linkerd on a Kubernetes cluster (--ztfl-backend=kind|kube); "
        "the local backend supports native|sidecar (cell SEC3-NET0-iid-s0)"
    ), line


def test_mesh_cells_skip_with_the_reason_when_auto_resolves_to_local(
    pytester: pytest.Pytester, guarded: Tripwire, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_ztfl import backends

    # what auto resolves to depends on the machine: make it local here, whatever this one has
    monkeypatch.setattr(
        backends, "choose", lambda backend, context, image=None: ("local", "no kind here")
    )
    result = pytester.runpytest_inprocess(
        "--ztfl-matrix=smoke", "--ztfl-mtls=mesh", "-k", "SEC3", "-p", "no:cacheprovider", "-rs"
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(skipped=4)  # the two SEC3 cells and their pooled comparisons
    skips = [line for line in result.outlines if line.startswith("SKIPPED [")]
    assert any(s.startswith("SKIPPED [2]") and "mtls=mesh: needs Linkerd on a Kubernetes "
               "cluster" in s for s in skips), skips
    assert len([s for s in skips if "no measured pair of cells" in s]) == 2, skips


def test_unwritable_out_dir_is_a_usage_error(pytester: pytest.Pytester, guarded: Tripwire) -> None:
    regular = pytester.path / "afile"
    regular.write_text("not a directory")
    line = _usage_error(pytester, "--ztfl-matrix=smoke", f"--ztfl-out={regular}/out")
    assert f"--ztfl-out={regular}/out: not writable" in line, line
    assert regular.read_text() == "not a directory"
    # the report directory too, before the matrix runs (not in teardown after it)
    line = _usage_error(pytester, "--ztfl-matrix=smoke", f"--ztfl-report={regular}/rep")
    assert f"--ztfl-report={regular}/rep: not writable" in line, line


def test_net_profile_missing_from_a_custom_profiles_file(
    pytester: pytest.Pytester, guarded: Tripwire
) -> None:
    """A profiles file that does not define a NET the matrix uses: the field is named."""
    from k8s_fixtures.netem import profiles

    shipped = profiles.load_profiles(None)
    assert "NET2" in shipped
    path = pytester.path / "sec01.yaml"
    path.write_text(SEC01.replace("[NET0]", "[NET0, NET7]"))
    line = _usage_error(pytester, f"--ztfl-matrix={path}")
    assert "net[1]='NET7'" in line and "NET2" in line, line  # lists the known profiles


def test_resume_refuses_a_different_matrix(
    pytester: pytest.Pytester, guarded: Tripwire, tmp_path: Path
) -> None:
    from pytest_ztfl.matrix import load
    from pytest_ztfl.results import ResultStore

    out = tmp_path / "out"
    ResultStore(out).prepare(load("quick").to_dict(), resume=False)
    line = _usage_error(pytester, "--ztfl-matrix=smoke", f"--ztfl-out={out}", "--ztfl-resume")
    assert "--ztfl-resume" in line and "different matrix (quick)" in line, line


def test_resume_refuses_to_add_cells_measured_by_other_code(
    pytester: pytest.Pytester, guarded: Tripwire, tmp_path: Path
) -> None:
    """Stored cells measured at another commit: a resumed run that would measure more refuses
    (one directory, one version of the instrument); one that only loads them goes on."""
    from pytest_ztfl import environment
    from pytest_ztfl.matrix import load

    out = tmp_path / "out"
    report_synth().build_results(out, load("smoke"))
    cells = sorted((out / "cells").glob("*.json"))
    here = environment.capture()["git_commit"]
    assert all(json.loads(p.read_text())["environment"]["git_commit"] == here for p in cells)
    for p in cells:
        row = json.loads(p.read_text())
        row["environment"]["git_commit"] = "0123456789abcdef0123456789abcdef01234567"
        p.write_text(json.dumps(row))
    loading = pytester.runpytest_inprocess("--ztfl-matrix=smoke", f"--ztfl-out={out}",
                                           "--ztfl-resume", "-p", "no:cacheprovider")
    assert loading.ret != pytest.ExitCode.USAGE_ERROR, loading.stdout.str()
    cells[0].unlink()
    before = sorted(p.name for p in (out / "cells").iterdir())
    line = _usage_error(pytester, "--ztfl-matrix=smoke", f"--ztfl-out={out}", "--ztfl-resume")
    assert "measured by the code at 0123456789ab" in line and f"at {str(here)[:12]};" in line, line
    assert sorted(p.name for p in (out / "cells").iterdir()) == before  # nothing touched


def test_ini_settings_apply_and_the_command_line_wins(
    pytester: pytest.Pytester, guarded: Tripwire, tmp_path: Path
) -> None:
    pytester.makeini(
        f"""
        [pytest]
        ztfl_matrix = smoke
        ztfl_seeds = 0-1
        ztfl_out = {tmp_path / "ini-out"}
        """
    )
    from_ini = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:cacheprovider")
    assert from_ini.ret == pytest.ExitCode.OK, from_ini.stdout.str()
    ids = collected_ids(from_ini.outlines)
    assert len(ids) == 8 and "test_fl[SEC3-NET2-iid-s1]" in ids, ids
    assert not (tmp_path / "ini-out").exists()  # checked, not created: collect-only writes none

    cli = pytester.runpytest_inprocess(
        "--collect-only", "-q", "-p", "no:cacheprovider", "--ztfl-seeds=4"
    )
    assert collected_ids(cli.outlines) == [
        "test_fl[SEC0-NET0-iid-s4]",
        "test_fl[SEC0-NET2-iid-s4]",
        "test_fl[SEC3-NET0-iid-s4]",
        "test_fl[SEC3-NET2-iid-s4]",
    ]

    bad = pytester.runpytest_inprocess("--collect-only", "-q", "--ztfl-rounds=-3")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert error_lines(bad.errlines) == ["ERROR: --ztfl-rounds=-3: must be between 1 and 100000"]


SANDBOX = """\
import json, subprocess, sys

def netns():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return sorted(line.split()[0] for line in out.stdout.splitlines() if line.strip())

subprocess.run(["mount", "-t", "tmpfs", "ztfl-plugin-test", "/run/netns"], check=True)
before = netns()
runs = []
for args in json.loads(sys.argv[1]):
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                       capture_output=True, text=True)
    runs.append({"args": args, "rc": p.returncode, "stderr": p.stderr})
after = netns()
subprocess.run(["ip", "netns", "add", "ztfl-sandbox-control"], check=True)
control = netns()
print(json.dumps({"before": before, "after": after, "control": control, "runs": runs}))
"""


@pytest.mark.privileged
def test_usage_errors_create_no_namespace_and_no_state(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    """Real pytest processes, each a usage error, in a private mount namespace whose
    ``/run/netns`` starts empty: afterwards it is still empty (a control namespace created the
    same way does show up), and the state root holds no cluster."""
    state_root = tmp_path / "state"
    apply_env(monkeypatch, subprocess_env(data_dir, state_root))
    Path("/run/netns").mkdir(exist_ok=True)
    sec01 = pytester.path / "sec01.yaml"
    sec01.write_text(SEC01)
    regular = pytester.path / "afile"
    regular.write_text("x")
    cases = [
        (["--ztfl-matrix=quik"], "--ztfl-matrix=quik"),
        ([f"--ztfl-matrix={sec01}", "--ztfl-mtls=native"], "--ztfl-mtls=native"),
        (["--ztfl-matrix=smoke", f"--ztfl-out={regular}/out"], f"--ztfl-out={regular}/out"),
    ]
    driver = pytester.path / "sandbox.py"
    driver.write_text(SANDBOX)
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            str(driver),
            json.dumps([args for args, _ in cases]),
        ],
        cwd=pytester.path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["before"] == [] and seen["after"] == [], seen
    assert seen["control"] == ["ztfl-sandbox-control"]  # the check does see new namespaces
    for (_args, expected), run in zip(cases, seen["runs"], strict=True):
        assert run["rc"] == pytest.ExitCode.USAGE_ERROR, run
        errors = error_lines(run["stderr"].splitlines())
        assert len(errors) == 1 and expected in errors[0], run
    assert cluster_dirs(state_root) == []


SLOW_LINK = """\
profiles:
  NET0:
    description: none
  NET9:
    description: too slow for the paper CNN in 30 s
    up: {delay_ms: 50, rate_mbit: 0.5}
    down: {delay_ms: 50, rate_mbit: 1}
"""


def test_a_rate_too_low_for_the_round_deadline_warns_with_the_minimum_time(
    pytester: pytest.Pytester, guarded: Tripwire
) -> None:
    """Issue 5's bad input: warned at configure time, before any cluster, with the computed
    minimum transfer time; -W error turns it into a failed start."""
    profiles = pytester.path / "slow.yaml"
    profiles.write_text(SLOW_LINK)
    matrix = pytester.path / "slow-matrix.yaml"
    matrix.write_text(SEC01.replace("[NET0]", "[NET0, NET9]").replace(
        "{clients: 2, rounds: 2}", "{clients: 2, rounds: 2, model: paper, round_deadline: 30}"))
    args = (f"--ztfl-matrix={matrix}", f"--ztfl-net-profiles={profiles}", "--collect-only",
            "-p", "no:cacheprovider")
    result = pytester.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    out = result.stdout.str()
    # 4,799,528 B x 1514/1448 x 8: 80.3 s up at 0.5 Mbit/s + 40.1 s down at 1 + 0.1 s delay
    assert ("ZtflRoundBudgetWarning: profile NET9: moving a 4799528 B model down and up takes "
            "at least 120.54 s") in out, out
    assert "more than the round deadline 30.00 s: 2 cell(s) with model paper" in out
    assert "profile NET0" not in out
    # every warning of the plugin under one base, as pytest's own PytestWarning
    pytester.makeini("[pytest]\nfilterwarnings = error::pytest_ztfl.ZtflWarning\n")
    strict = pytester.runpytest_inprocess(*args)
    assert strict.ret != pytest.ExitCode.OK
    assert "ZtflRoundBudgetWarning: profile NET9" in strict.stdout.str() + strict.stderr.str()


def test_every_warning_of_the_plugin_has_the_exported_base() -> None:
    import pytest_ztfl
    from pytest_ztfl import warning_types

    classes = [c for c in vars(warning_types).values()
               if isinstance(c, type) and issubclass(c, Warning)]
    assert len(classes) == 7
    for c in classes:
        assert issubclass(c, pytest_ztfl.ZtflWarning) and getattr(pytest_ztfl, c.__name__) is c


def test_a_custom_profiles_file_is_refused_where_the_image_shapes_the_links(
    pytester: pytest.Pytester, guarded: Tripwire
) -> None:
    """On kind/kube the pods' tc init container applies the image's shipped profiles: a
    --ztfl-net-profiles file would be calibrated and named in rows but never applied."""
    profiles = pytester.path / "slow.yaml"
    profiles.write_text(SLOW_LINK)
    matrix = pytester.path / "m.yaml"
    matrix.write_text(SEC01.replace("[NET0]", "[NET0, NET9]"))
    line = _usage_error(pytester, f"--ztfl-matrix={matrix}", f"--ztfl-net-profiles={profiles}",
                        "--ztfl-backend=kind")
    assert f"--ztfl-net-profiles={profiles}: on the kind backend" in line, line
    assert "--ztfl-backend=local" in line


DEAD_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: dead, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: dead, context: {cluster: dead, user: u}}]
current-context: dead
"""


def test_an_unreachable_cluster_fails_the_cells_instead_of_skipping_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, data_dir: Path, tmp_path: Path
) -> None:
    """A configured context whose API server does not answer is not "this machine cannot run
    the backend" (a skip, green in CI) but a failure, with one line saying why."""
    apply_env(monkeypatch, subprocess_env(data_dir, tmp_path / "state"))
    config = pytester.path / "kubeconfig"
    config.write_text(DEAD_KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(config))
    result = pytester.runpytest_inprocess("--ztfl-matrix=smoke", "--ztfl-backend=kube",
                                          "-p", "no:cacheprovider", "-x")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.assert_outcomes(errors=1)  # the cell's cluster fixture fails
    assert "--ztfl-backend=kube:" in result.stdout.str()
