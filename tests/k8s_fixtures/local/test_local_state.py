"""The state record under concurrent writers: a block's arms deploy from threads at once, each
recording its namespaces and processes. Every change must land in ``state.json`` and no writer
may lose another's temporary file (a quick run once died of FileNotFoundError there)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from k8s_fixtures.local import state


def test_concurrent_adds_and_forgets_all_land(tmp_path: Path) -> None:
    name = f"ztlc-state-{os.getpid()}"
    st = state.StateDir(tmp_path, name, state.Record(name, "root", os.getpid()))
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(i: int) -> None:
        try:
            start.wait()
            for j in range(60):
                st.add(netns=f"ns-{i}-{j}")
            for j in range(0, 60, 2):
                st.forget(netns=f"ns-{i}-{j}")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        stored = json.loads((tmp_path / name / "state.json").read_text())["netns"]
        want = {f"ns-{i}-{j}" for i in range(8) for j in range(1, 60, 2)}
        assert sorted(stored) == sorted(want)
        assert not (tmp_path / name / "state.json.tmp").exists()
    finally:
        st.close()
