"""The ``ztfl`` command line as a user meets it: help for users, ``--version``, a bare ``ztfl``
shows what it can do, and bad input is one ``ztfl <cmd>: error: ...`` line naming the option
and the value, with nothing written and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_ztfl.cli import main


def test_help_is_for_users_and_version_is_the_package_s(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "pytest --ztfl-matrix=quick runs the measurements" in text
    assert "ztfl render --matrix quick --out D" in text
    assert "dispatch" not in text and "register(" not in text  # no developer notes
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    from importlib.metadata import version

    assert capsys.readouterr().out.strip() == f"ztfl (pytest-ztfl) {version('pytest-ztfl')}"
    with pytest.raises(SystemExit):
        main(["cluster", "--help"])
    assert "register(" not in capsys.readouterr().out


def test_a_bare_ztfl_shows_its_commands_as_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: ztfl") and "ztfl report RESULTS_DIR" in err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["render", "--matrix", "quik", "--out", "{tmp}/r"],
         "ztfl render: error: --matrix=quik: not a preset (smoke, quick, paper, full, "
         "hetero-smoke) nor a .yaml file"),
        (["render", "--matrix", "smoke", "--out", "/proc/ztfl-x"],
         "ztfl render: error: --out=/proc/ztfl-x: not writable (No such file or directory)"),
        (["render", "--matrix", "smoke", "--out", "{tmp}/file"],
         "ztfl render: error: --out={tmp}/file: a file, not a directory"),
        (["calibrate", "NET9"],
         "ztfl calibrate: error: profile NET9: unknown profile (known: NET0, NET1, NET2, NET3, "
         "NET4)"),
        (["netpol", "probe", "--policies", "{tmp}/none.yaml"],
         "ztfl netpol probe: error: "),
        (["report", "{tmp}/no-results"], "ztfl report: error: {tmp}/no-results: "),
        (["cluster", "frob"], "ztfl cluster: error: argument cluster_command: invalid choice: "),
    ],
    ids=["matrix", "out-unwritable", "out-is-a-file", "calibrate", "netpol", "report", "cluster"],
)
def test_bad_input_is_one_error_line_naming_the_option(
    argv: list[str], line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    before = sorted(tmp_path.iterdir())
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors exit
        rc = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line.replace("{tmp}", str(tmp_path))), err
    assert sorted(tmp_path.iterdir()) == before  # nothing written
