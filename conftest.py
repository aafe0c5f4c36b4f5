"""Repository-wide test configuration: where the MNIST data is, and the privileged-test policy.

Tests that need root (or a user namespace) to create network namespaces carry
``@pytest.mark.privileged``. Where the machine cannot provide that they skip with the precise
reason, unless ``ZTFL_REQUIRE_PRIVILEGED=1`` (set by CI), which turns the skip into a failure so
CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent

# Property tests judge values, not speed: on a shared, loaded CI machine an example that takes
# longer than hypothesis's default 200 ms deadline is not a failure.
settings.register_profile("ztfl", deadline=None)
settings.load_profile("ztfl")


def mnist_dir() -> Path | None:
    """The MNIST directory tests use: ``$ZTFL_DATA_DIR``, else the shared offline copy."""
    env = os.environ.get("ZTFL_DATA_DIR")
    candidates = [Path(env)] if env else [REPO.parent / "shared" / "data" / "mnist"]
    for c in candidates:
        if (c / "MNIST" / "raw").is_dir() or c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = mnist_dir()
    if d is None:
        why = "no MNIST data: set ZTFL_DATA_DIR to a directory holding MNIST/raw/*.gz"
        if os.environ.get("ZTFL_REQUIRE_PRIVILEGED") == "1":  # CI: never pass by skipping
            pytest.fail(f"ZTFL_REQUIRE_PRIVILEGED=1 but {why}", pytrace=False)
        pytest.skip(why)
    return d


def privilege_problem() -> str | None:
    """Why this machine cannot create network namespaces for the tests, or None if it can."""
    if os.geteuid() != 0:
        return "not root: the namespace tests need root (rootless runs are covered separately)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"'{tool}' is not installed (run scripts/bootstrap)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("privileged") is None:
        return
    problem = privilege_problem()
    if problem is None:
        return
    if os.environ.get("ZTFL_REQUIRE_PRIVILEGED") == "1":
        pytest.fail(f"ZTFL_REQUIRE_PRIVILEGED=1 but {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def state_root(tmp_path: Path) -> Path:
    """A private state directory for local clusters and calibration topologies."""
    d = tmp_path / "state"
    d.mkdir()
    d.chmod(0o755)
    return d
