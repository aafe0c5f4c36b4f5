"""Faults of the workload itself (class ``workload``): a client process killed mid-round, a
hostile peer's malformed update."""

from __future__ import annotations

import json
import signal
import time
from dataclasses import replace
from typing import Any

from k8s_fixtures import workload
from pytest_ztfl.faults.base import (
    TARGET,
    Action,
    Fault,
    FaultContext,
    Obj,
    flag,
    guarded,
    pod_obj,
    set_flag,
    short_join,
)


def _kill_client(ctx: FaultContext) -> None:
    """SIGKILL client 1's main process while round 2 is in flight."""
    if not ctx.round_started(2).wait(600) or ctx.stop.is_set():
        return
    t = time.time()
    ctx.cluster.signal(
        ctx.namespace, f"{workload.CLIENT}-{TARGET}", workload.CLIENT, signal.SIGKILL
    )
    ctx.record(Action("sigkill", TARGET, t, time.time()))


def _restart_on_failure(objs: list[Obj], run: workload.FLRun, ca: Any) -> list[Obj]:
    pod_obj(objs, f"{workload.CLIENT}-{TARGET}")["spec"]["restartPolicy"] = "OnFailure"
    return objs


HOSTILE = r"""
import json, os, sys
import grpc
import numpy as np
from fl_app.proto import fl_pb2, fl_pb2_grpc
from fl_app.tensors import from_proto, to_proto
server, cid, tls_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
opts = [("grpc.max_receive_message_length", 64 << 20)]
if os.path.exists(os.path.join(tls_dir, "tls.crt")):
    rd = lambda n: open(os.path.join(tls_dir, n), "rb").read()
    creds = grpc.ssl_channel_credentials(rd("ca.crt"), rd("tls.key"), rd("tls.crt"))
    ch = grpc.secure_channel(server, creds, options=opts)
else:
    ch = grpc.insecure_channel(server, options=opts)
stub = fl_pb2_grpc.FederatedLearningStub(ch)
out = {"joined": False, "submitted": False}
try:
    for task in stub.Join(fl_pb2.JoinRequest(client_id=cid), timeout=120):
        if task.kind == fl_pb2.Task.SETUP:
            out["joined"] = True
        elif task.kind == fl_pb2.Task.TRAIN:
            arrays = {}
            for t in task.weights.tensors:
                a = np.frombuffer(t.data, dtype=np.dtype(t.dtype)).reshape(tuple(t.shape))
                arrays[t.name] = a.copy()
            name = next(iter(arrays))
            arrays[name] = np.full(arrays[name].size - 1, np.nan, arrays[name].dtype)
            upd = fl_pb2.Update(client_id=cid, round=task.round, weights=to_proto(arrays),
                                num_samples=10, train_seconds=0.1)
            out["round"] = task.round
            try:
                stub.Submit(upd, timeout=30)
                out["status"] = "OK"
            except grpc.RpcError as e:
                out["status"], out["details"] = e.code().name, e.details()
            out["submitted"] = True
            break
        elif task.kind == fl_pb2.Task.FINISH:
            break
except grpc.RpcError as e:
    out["error"] = f"{e.code().name}: {e.details()}"
print(json.dumps(out), flush=True)
"""


def _hostile_prepare(run: workload.FLRun) -> workload.FLRun:
    """One more client id than there are client pods: the hostile peer's."""
    n = int(flag(run.server_flags, "--clients") or run.clients)
    run = replace(run, server_flags=set_flag(run.server_flags, "--clients", str(n + 1)))
    return short_join(run)


def _hostile(ctx: FaultContext) -> None:
    """Join as the extra client and answer the first TRAIN task with a malformed update.
    Started as the rounds are released, not later: the peer's Python start-up takes seconds on
    a loaded machine, while a short run's rounds take a fraction of one."""
    if ctx.stop.is_set():
        return
    cid = int(flag(ctx.run.server_flags, "--clients") or ctx.run.clients) - 1
    t = time.time()
    argv = [
        *ctx.run.python,
        "-c",
        HOSTILE,
        f"{workload.SERVER}:{workload.PORT}",
        str(cid),
        workload.TLS_DIR,
    ]
    try:
        rc, out, err = ctx.cluster.exec(
            ctx.namespace, f"{workload.CLIENT}-0", argv, container=workload.CLIENT, timeout=120
        )
    except Exception as exc:
        rc, out, err = -1, "", str(exc)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    detail: dict[str, Any] = json.loads(lines[-1]) if lines else {"rc": rc, "err": err[-300:]}
    ctx.record(Action("hostile", cid, t, time.time(), detail))


FAULTS = (
    Fault(
        "client-kill",
        "workload",
        "client 1 SIGKILLed during round 2, restarted (restartPolicy OnFailure)",
        inject=guarded(_kill_client),
        objects=_restart_on_failure,
        # on Kubernetes the client is its container's PID 1, which ignores a SIGKILL sent
        # from inside its own PID namespace (and the image ships no kill(1))
        local_only=True,
    ),
    Fault(
        "malformed-update",
        "workload",
        "a hostile peer joins with an extra client id and submits a malformed update",
        prepare=_hostile_prepare,
        inject=guarded(_hostile),
    ),
)
