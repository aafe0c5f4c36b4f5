"""The zygote (k8s_fixtures/local/zygote.py) on a live local cluster: a container forked from
the pre-imported process sees exactly what one started by its own interpreter sees (network,
mount and UTS namespaces, cgroups, resolv.conf, hostname, environment), and exits, is
signalled and is killed as its container's main process is; an exec forked from it sees what
an exec through nsenter sees, and gets its input, output, exit code and timeout as that does;
an exec whose zygote dies meanwhile fails saying so."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ztlc_support import module_cluster

from k8s_fixtures.cluster import ClusterError, Obj
from k8s_fixtures.local.backend import LocalCluster

pytestmark = pytest.mark.privileged
PROBE_DIR = str(Path(__file__).with_name("zygote_probe"))
ENV = {"PYTHONUNBUFFERED": "1", "PYTHONPATH": PROBE_DIR, "ZTLC_PROBE": "yes"}
_n = itertools.count()


@pytest.fixture(scope="module")
def zcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with module_cluster(tmp_path_factory, zygotes=[(["ztlc_zygote_probe"], ENV)]) as c:
        yield c


def pod(ns: str, name: str, mode: str, env: dict[str, str] = ENV,
        limits: dict[str, str] | None = None, mount: str | None = None,
        security: dict[str, Any] | None = None) -> list[Obj]:
    container: dict[str, Any] = {
        "name": "main", "command": [sys.executable, "-m", "ztlc_zygote_probe", mode],
        "env": [{"name": k, "value": v} for k, v in env.items()]}
    if security:
        container["securityContext"] = security
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if limits:
        container["resources"] = {"limits": limits}
    if mount:
        container["volumeMounts"] = [{"name": "v", "mountPath": mount}]
        spec["volumes"] = [{"name": "v", "emptyDir": {}}]
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
             "spec": spec}]


def seen(c: LocalCluster, ns: str, name: str) -> dict[str, Any]:
    """The probe's report: the first JSON line of its log (followed until it comes)."""
    for chunk in c.logs(ns, name, follow=True, timeout=60):
        for line in chunk.splitlines():
            if line.startswith("{"):
                return dict(json.loads(line))
    raise AssertionError("no report in the log: " + "".join(c.logs(ns, name))[-2000:])


def main_pid(c: LocalCluster, ns: str, name: str) -> int:
    """The container's main process (the stub), as the supervisor knows it."""
    run = c._pods[(ns, name)].containers[0]
    assert run.pid is not None
    return run.pid


def test_a_forked_container_sees_its_pod_exactly(zcluster: LocalCluster) -> None:
    ns = f"z{next(_n)}"
    zcluster.apply(pod(ns, "probe", "report"))
    st = zcluster.wait_finished(ns, "probe", timeout=60)
    r = seen(zcluster, ns, "probe")
    assert st.exit_code == 3  # the module's own exit code, relayed by the stub
    assert r["imported_in"] != r["pid"], "not forked from the zygote"
    # what a process that nsenter puts into the container's namespaces sees (the check the
    # proofs' exec relies on), in a second pod of the same kind kept running
    zcluster.apply(pod(ns, "twin", "wait")[1:])
    zcluster.wait_ready(ns, names=["twin"], timeout=60)
    twin = seen(zcluster, ns, "twin")
    view = zcluster.exec(ns, "twin", ["sh", "-c", "readlink /proc/self/ns/net /proc/self/ns/mnt"
                                      " /proc/self/ns/uts; hostname; cat /etc/resolv.conf"])
    lines = view.out.splitlines()
    assert [twin["ns"]["net"], twin["ns"]["mnt"], twin["ns"]["uts"]] == lines[:3]
    assert lines[3] == "twin" == twin["hostname"]
    assert "\n".join(lines[4:]) + "\n" == twin["resolv"]
    host = set(os.readlink(f"/proc/self/ns/{n}") for n in ("net", "mnt", "uts"))
    assert not host & set(twin["ns"].values())
    main = main_pid(zcluster, ns, "twin")
    assert Path(f"/proc/{main}/cgroup").read_text() == twin["cgroup"]
    assert "ztlc" in twin["cgroup"]
    assert twin["env"] == "yes" and twin["argv"] == ["wait"] and twin["cwd"] == os.getcwd()
    # SIGTERM to the main process reaches the worker; the container ends with its status
    zcluster.signal(ns, "twin", "main", signal.SIGTERM)
    assert zcluster.wait_finished(ns, "twin", timeout=30).exit_code == 143
    zcluster.delete(namespace=ns)


def test_a_mount_over_the_zygotes_directory_does_not_stop_the_fork(
        zcluster: LocalCluster) -> None:
    """A mountPath whose parents do not exist gets a private overlay on its nearest ancestor
    (as a TLS Secret at /var/run/ztfl/tls does over /run/ztfl, where the zygote's socket
    lives): the container is forked all the same, at once, not after a fallback."""
    ns = f"z{next(_n)}"
    hidden = zcluster.state_dir.parent / "ztlc-new" / "dir"
    zcluster.apply(pod(ns, "mounted", "report", mount=str(hidden)))
    assert zcluster.wait_finished(ns, "mounted", timeout=30).exit_code == 3
    r = seen(zcluster, ns, "mounted")
    assert r["imported_in"] != r["pid"], "".join(zcluster.logs(ns, "mounted"))[-2000:]
    zcluster.delete(namespace=ns)


def test_sigkill_of_the_main_process_ends_the_worker(zcluster: LocalCluster) -> None:
    ns = f"z{next(_n)}"
    zcluster.apply(pod(ns, "victim", "wait"))
    zcluster.wait_ready(ns, names=["victim"], timeout=60)
    worker = seen(zcluster, ns, "victim")["pid"]
    zcluster.signal(ns, "victim", "main", signal.SIGKILL)
    assert zcluster.wait_finished(ns, "victim", timeout=30).exit_code == 137
    assert not Path(f"/proc/{worker}").exists() or \
        Path(f"/proc/{worker}/stat").read_text().split()[2] == "Z"
    zcluster.delete(namespace=ns)


@pytest.mark.parametrize("why", ["other-env", "memory-limit"])
def test_what_the_zygote_must_not_serve_starts_its_own_interpreter(
        zcluster: LocalCluster, why: str) -> None:
    ns = f"z{next(_n)}"
    if why == "other-env":
        objs = pod(ns, "own", "report", env={**ENV, "GRPC_VERBOSITY": "debug"})
    else:
        objs = pod(ns, "own", "report", limits={"memory": "256Mi"})
    zcluster.apply(objs)
    assert zcluster.wait_finished(ns, "own", timeout=60).exit_code == 3
    r = seen(zcluster, ns, "own")
    assert r["imported_in"] == r["pid"]
    zcluster.delete(namespace=ns)


RESTRICTED = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
              "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
              "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def credentials(pid: int) -> dict[str, str]:
    return {k: " ".join(v.split()) for k, _, v in
            (ln.partition(":") for ln in Path(f"/proc/{pid}/status").read_text().splitlines())
            if k in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                     "NoNewPrivs", "Seccomp")}


def test_a_forked_container_is_confined_as_its_security_context_says(
        zcluster: LocalCluster) -> None:
    """The worker itself (not only an exec beside it) runs as the container's user, with no
    capability, no_new_privs, the seccomp filter and a read-only root: exactly the rights of
    the container's main process."""
    ns = f"z{next(_n)}"
    zcluster.apply(pod(ns, "conf", "wait", security=RESTRICTED))
    zcluster.wait_ready(ns, names=["conf"], timeout=60)
    r = seen(zcluster, ns, "conf")
    assert r["imported_in"] != r["pid"], "not forked from the zygote"
    st = r["status"]
    assert st["Uid"] == "10001 10001 10001 10001" and st["Gid"] == "10001 10001 10001 10001"
    assert all(int(st[c], 16) == 0 for c in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"))
    assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2" and st["Groups"] == ""
    assert r["root_write"] == "EROFS"
    assert credentials(r["pid"]) == credentials(main_pid(zcluster, ns, "conf")) == st
    zcluster.delete(namespace=ns)


def test_the_posture_probe_sees_every_process_in_the_containers_cgroup(
        zcluster: LocalCluster) -> None:
    """The SEC3 proofs' probe, exec'd as the container's user, lists the forked worker (in the
    container's cgroup, not a child of the main process) and would list a process with more
    rights than itself there: a root process put into the cgroup shows with uid 0."""
    ns = f"z{next(_n)}"
    zcluster.apply(pod(ns, "conf", "wait", security=RESTRICTED))
    zcluster.wait_ready(ns, names=["conf"], timeout=60)
    worker = seen(zcluster, ns, "conf")["pid"]
    run = zcluster._pods[(ns, "conf")].containers[0]
    assert run.cgroup is not None
    intruder = subprocess.Popen(["sleep", "120"])
    try:
        for f in run.cgroup.procs_files:
            Path(f).write_text(str(intruder.pid))
        got = zcluster.exec(ns, "conf", [sys.executable, "-m", "k8s_fixtures.posture"])
        assert got.rc == 0, got.err
        procs = {p["pid"]: p for p in json.loads(got.out.splitlines()[-1])["processes"]}
    finally:
        intruder.kill()
        intruder.wait()
    assert {worker, main_pid(zcluster, ns, "conf"), intruder.pid} <= set(procs), procs
    assert procs[worker]["uid"] == [10001] * 4 and procs[worker]["seccomp"] == 2
    assert procs[intruder.pid]["uid"] == [0] * 4 and procs[intruder.pid]["seccomp"] == 0
    zcluster.delete(namespace=ns)


def test_an_exec_forked_from_the_zygote_sees_what_an_nsenter_exec_sees(
        zcluster: LocalCluster) -> None:
    """``python -m MODULE`` of a pre-imported module is forked (the proofs' probes are); the
    same command spelled so that the zygote does not serve it goes through nsenter. Both see
    the same namespaces, cgroup, files, environment, directory and rights, in a restricted
    container, and return the module's exit code."""
    ns = f"z{next(_n)}"
    zcluster.apply(pod(ns, "target", "wait", security=RESTRICTED))
    zcluster.wait_ready(ns, names=["target"], timeout=60)
    main = seen(zcluster, ns, "target")
    forked = zcluster.exec(ns, "target", [sys.executable, "-m", "ztlc_zygote_probe", "report"])
    entered = zcluster.exec(ns, "target",
                            [sys.executable, "-u", "-m", "ztlc_zygote_probe", "report"])
    assert forked.rc == entered.rc == 3, (forked, entered)
    f, e = json.loads(forked.out), json.loads(entered.out)
    assert f["imported_in"] != f["pid"], "the exec was not forked from the zygote"
    assert e["imported_in"] == e["pid"], "the nsenter exec was forked"
    same = ("hostname", "ns", "cgroup", "resolv", "env", "argv", "cwd", "status", "root_write",
            "lazy_import")
    assert {k: f[k] for k in same} == {k: e[k] for k in same}
    assert f["ns"] == main["ns"] and f["cgroup"] == main["cgroup"]
    assert f["status"] == main["status"] and f["status"]["Uid"].startswith("10001 ")
    zcluster.delete(namespace=ns)


def test_a_forked_exec_takes_input_and_times_out_as_an_nsenter_exec(
        zcluster: LocalCluster) -> None:
    ns = f"z{next(_n)}"
    zcluster.apply(pod(ns, "target", "wait"))
    zcluster.wait_ready(ns, names=["target"], timeout=60)
    worker = seen(zcluster, ns, "target")["pid"]
    argv = [sys.executable, "-m", "ztlc_zygote_probe"]
    got = zcluster.exec(ns, "target", [*argv, "stdin"], input="hello\n" * 20_000)
    assert (got.rc, got.out, got.err) == (0, "HELLO\n" * 20_000, "done\n")
    with pytest.raises(ClusterError, match=r"exec .* timed out after 2"):
        zcluster.exec(ns, "target", [*argv, "wait"], timeout=2)
    run = zcluster._pods[(ns, "target")].containers[0]
    assert run.cgroup is not None
    files = run.cgroup.procs_files
    main = main_pid(zcluster, ns, "target")

    def procs() -> set[int]:
        return {int(x) for f in files for x in Path(f).read_text().split()}

    deadline = time.monotonic() + 10  # the killed exec is reaped by the zygote
    while procs() != {main, worker} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert procs() == {main, worker}
    zcluster.delete(namespace=ns)


def test_a_forked_exec_reaches_the_interpreter_in_a_container_of_another_program(
        zcluster: LocalCluster) -> None:
    """A container whose command is not Python (a sidecar proxy's), run as a user that may
    not search the interpreter's directories: the forked exec imports from the standard
    library as an exec through nsenter can (the interpreter's path made reachable for that
    user, in the container's mount namespace only)."""
    ns = f"z{next(_n)}"
    objs = pod(ns, "other", "wait", security=RESTRICTED)
    objs[1]["spec"]["containers"][0]["command"] = ["sleep", "300"]
    zcluster.apply(objs)
    zcluster.wait_ready(ns, names=["other"], timeout=60)
    got = zcluster.exec(ns, "other", [sys.executable, "-m", "ztlc_zygote_probe", "report"])
    assert got.rc == 3, got
    r = json.loads(got.out)
    assert r["imported_in"] != r["pid"], "the exec was not forked from the zygote"
    assert r["lazy_import"] == "ok" and r["status"]["Uid"].startswith("10001 ")
    zcluster.delete(namespace=ns)


def test_an_exec_whose_zygote_dies_fails_saying_so_and_is_ended(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """The zygote killed while an exec it forked runs: the exec fails naming the zygote (no
    exit code stands in for the lost status) and its worker is ended. A cluster of its own:
    this one loses its zygote."""
    with module_cluster(tmp_path_factory, zygotes=[(["ztlc_zygote_probe"], ENV)]) as c:
        ns = f"z{next(_n)}"
        c.apply(pod(ns, "target", "wait"))
        c.wait_ready(ns, names=["target"], timeout=60)
        before = {main_pid(c, ns, "target"), seen(c, ns, "target")["pid"]}
        run = c._pods[(ns, "target")].containers[0]
        assert run.cgroup is not None
        files = run.cgroup.procs_files

        def procs() -> set[int]:
            return {int(x) for f in files for x in Path(f).read_text().split()}

        failed: list[BaseException] = []

        def exec_wait() -> None:
            try:
                c.exec(ns, "target", [sys.executable, "-m", "ztlc_zygote_probe", "wait"],
                       timeout=60)
            except ClusterError as e:
                failed.append(e)

        t = threading.Thread(target=exec_wait)
        t.start()
        deadline = time.monotonic() + 30
        while not procs() - before and time.monotonic() < deadline:
            time.sleep(0.05)
        execd = procs() - before
        assert execd, "the exec's worker never joined the container's cgroup"
        assert c._sup is not None
        c._sup.zygotes[0].proc.kill()
        t.join(timeout=30)
        assert not t.is_alive()
        assert len(failed) == 1 and "the zygote died during the exec" in str(failed[0]), failed
        deadline = time.monotonic() + 10
        while procs() & execd and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not procs() & execd
        c.delete(namespace=ns)
