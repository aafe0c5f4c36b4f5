"""Pod status interpretation, failure classification and readiness, on real API documents.

Every document in ``fixtures/`` carries a comment naming where it was recorded (Kubernetes
docs, GitHub issues quoting ``kubectl get pod -o yaml``/API JSON) and which parts are verbatim.
"""

from __future__ import annotations

import copy

from kube_support import fixture_doc

from k8s_fixtures.kube.failures import NETEM_INIT, classify
from k8s_fixtures.kube.readiness import assess, finished
from k8s_fixtures.kube.status import pod_status


def test_oomkilled_is_a_resource_failure_with_the_limit_named() -> None:
    doc = fixture_doc("oomkilled.yaml")
    st = pod_status(doc)
    c = st.containers[0]
    assert (c.state, c.waiting_reason, c.exit_code, c.reason, c.restart_count) == (
        "waiting", "CrashLoopBackOff", 137, "OOMKilled", 2)
    assert st.display == "CrashLoopBackOff" and st.restart_count == 2 and not st.ready
    [f] = classify(doc)
    assert (f.klass, f.reason, f.container, f.terminal) == (
        "resource", "OOMKilled", "memory-demo-2-ctr", True)
    assert "memory limit 100Mi" in f.detail and "raise the memory limit" in f.fix


def test_oomkilled_with_exit_code_0_and_phase_succeeded_is_still_oom() -> None:
    doc = fixture_doc("oomkilled-succeeded.yaml")
    st = pod_status(doc)
    assert st.phase == "Succeeded" and st.reason == "OOMKilled" and st.exit_code == 0
    assert st.display == "OOMKilled"
    [f] = classify(doc)
    assert f.klass == "resource" and "memory limit none (node OOM)" in f.detail
    assert finished(doc) is not None


def test_crashloopbackoff_is_a_crash_with_the_logs_command() -> None:
    doc = fixture_doc("crashloopbackoff.yaml")
    st = pod_status(doc)
    assert st.phase == "Running" and st.display == "CrashLoopBackOff"
    assert st.restart_count == 617 and st.containers[0].exit_code == 1
    [f] = classify(doc)
    assert (f.klass, f.reason, f.terminal) == ("crash", "CrashLoopBackOff", True)
    assert "kubectl logs -n ns-apps nsapp-fa868e46640f566de09528-0 -c app --previous" in f.fix
    assert "back-off 5m0s" in f.detail


def test_imagepullbackoff_on_kind_says_kind_load() -> None:
    doc = fixture_doc("imagepullbackoff.yaml")
    assert pod_status(doc).display == "ImagePullBackOff"
    [f] = classify(doc, kind_cluster="ztfl")
    assert (f.klass, f.reason) == ("image", "ImagePullBackOff")
    assert "kind load docker-image docker.io/cdrage/helloworldasdf --name ztfl" in f.fix
    [g] = classify(doc)  # a real cluster: push it somewhere the nodes can pull from
    assert "registry" in g.fix and "kind load" not in g.fix


def test_errimagepull_is_an_image_failure_with_the_runtime_message() -> None:
    doc = fixture_doc("errimagepull.yaml")
    [f] = classify(doc, kind_cluster="ztfl")
    assert (f.klass, f.reason) == ("image", "ErrImagePull")
    assert "pull access denied for nginx211" in f.detail


def test_init_error_blames_the_init_container_not_an_oom() -> None:
    doc = fixture_doc("init-error.yaml")
    st = pod_status(doc)
    assert st.phase == "Failed" and st.display == "Init:Error"
    assert st.exit_code == 103 and st.reason == "Error"  # the init container, not the 137
    fs = classify(doc)
    assert [(f.container, f.klass, f.reason) for f in fs] == [("init", "crash", "Init:Error")]


def test_netem_init_error_is_a_netem_failure() -> None:
    # The recorded Init:Error document with the init container renamed to ours and exit 3
    # (k8s_fixtures.netem.init: kernel without sch_netem).
    doc = copy.deepcopy(fixture_doc("init-error.yaml"))
    doc["spec"]["initContainers"][0]["name"] = NETEM_INIT
    init = doc["status"]["initContainerStatuses"][0]
    init["name"] = NETEM_INIT
    init["state"]["terminated"]["exitCode"] = 3
    [f] = classify(doc)
    assert (f.klass, f.reason, f.container) == ("netem", "Init:Error", NETEM_INIT)
    assert "modprobe sch_netem" in f.fix and f"-c {NETEM_INIT}" in f.fix


def test_readiness_fails_fast_on_terminal_failures_and_waits_otherwise() -> None:
    docs = [fixture_doc(n) for n in ("imagepullbackoff.yaml", "crashloopbackoff.yaml")]
    a = assess(docs)
    assert not a.done and {f.klass for f in a.fatal} == {"image", "crash"}
    pending = copy.deepcopy(docs[0])
    pending["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "ContainerCreating"}}
    a = assess([pending], ["helloworld", "absent"])
    assert not a.fatal and a.missing == ["absent"]
    assert a.describe() == "helloworld ContainerCreating, absent not found"


def test_readiness_done_when_the_ready_condition_is_true() -> None:
    doc = copy.deepcopy(fixture_doc("crashloopbackoff.yaml"))
    doc["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    doc["status"]["containerStatuses"][0].update(
        ready=True, restartCount=0, state={"running": {"startedAt": "2023-09-24T12:00:00Z"}},
        lastState={})
    doc["status"]["podIP"] = "10.244.0.7"
    a = assess([doc])
    assert a.done and [p.ip for p in a.ready] == ["10.244.0.7"]
    assert pod_status(doc).display == "Running"


def test_a_pod_the_kubelet_has_not_reported_yet_is_waiting() -> None:
    doc = {"metadata": {"name": "p", "namespace": "n"},
           "spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "i"}]},
           "status": {"phase": "Pending"}}
    st = pod_status(doc)
    assert st.display == "Init:0/1" and st.containers[0].state == "waiting"
    assert assess([doc]).waiting and not classify(doc)
