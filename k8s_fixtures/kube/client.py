"""The only module that touches the official ``kubernetes`` client: a small typed wrapper.

Everything crossing this boundary is a plain dict as the API server sends it (camelCase JSON),
so the rest of the package stays pure and typed. The client itself is untyped across the
versions we allow (30-39), so it is loaded as ``Any`` here and nowhere else. API errors are
turned into one-line :class:`~k8s_fixtures.cluster.ClusterError` messages (:mod:`.errors`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from k8s_fixtures.cluster import ClusterError, ExecResult, Obj, PrivilegeError
from k8s_fixtures.kube import errors

FIELD_MANAGER = "pytest-ztfl"
ERROR_CHANNEL = 3
GONE = 410  # a watch's resourceVersion is older than the server keeps: list again


class WatchExpired(ClusterError):
    """The resourceVersion a watch started from has expired (410 Gone): list again."""


def _k8s(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise PrivilegeError("the kubernetes Python client is not installed "
                             "(pip install 'pytest-ztfl[kube]')") from None


def split_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Lines (without the newline) of a byte stream cut at arbitrary points."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for ln in lines:
            yield ln.decode("utf-8", "replace").rstrip("\r")
    if buf:
        yield buf.decode("utf-8", "replace").rstrip("\r")


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    kw = {"label_selector": label_selector, "field_selector": field_selector}
    return {k: v for k, v in kw.items() if v}


def exec_exit_code(status: Any) -> int:
    """The exit code in the exec error channel's ``Status`` (``Success`` -> 0)."""
    if isinstance(status, str | bytes):
        try:
            status = json.loads(status) if status else {}
        except ValueError:
            return 1
    if not isinstance(status, dict) or status.get("status") == "Success" or not status:
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message"))
            except (TypeError, ValueError):
                return 1
    return 1


class KubeApi:
    """A connection to one API server (kubeconfig context, or in-cluster)."""

    def __init__(self, context: str | None = None, kubeconfig: Path | None = None,
                 *, in_cluster: bool = False, retries: int = 1) -> None:
        client, config = _k8s("kubernetes.client"), _k8s("kubernetes.config")
        cfg = client.Configuration()
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=cfg)
            else:
                config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None,
                                        context=context, client_configuration=cfg)
        except Exception as e:  # ConfigException and friends: bad or missing kubeconfig
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ClusterError(f"kubeconfig{' context ' + repr(context) if context else ''}: "
                               f"{first}") from None
        cfg.retries = retries
        self.context = context
        self.server: str = str(cfg.host)
        self._client = client
        self._api: Any = client.ApiClient(cfg)
        self._core: Any = client.CoreV1Api(self._api)
        self._dyn: Any = None

    # ------------------------------------------------------------------ error handling

    @contextlib.contextmanager
    def _call(self, verb: str, resource: str, namespace: str | None = None,
              name: str | None = None) -> Iterator[None]:
        try:
            yield
        except ClusterError:
            raise
        except Exception as e:
            status = getattr(e, "status", None)
            if isinstance(status, int) and status > 0:
                msg = errors.api_error(status, getattr(e, "body", None), verb=verb,
                                       resource=resource, namespace=namespace, name=name)
                raise (PrivilegeError if status in (401, 403) else ClusterError)(msg) from None
            if isinstance(e, OSError) or type(e).__module__.startswith("urllib3"):
                cause = str(e) or type(e).__name__
                raise ClusterError(errors.unreachable(self.server, self.context, cause)) from None
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise ClusterError(f"{verb} {resource}{' ' + str(namespace) if namespace else ''}"
                               f"{'/' + name if name else ''}: {type(e).__name__}: {first}") from e

    @staticmethod
    def not_found(e: BaseException) -> bool:
        return getattr(e, "status", None) == 404

    # ------------------------------------------------------------------ reads

    def version(self, timeout: float = 5.0) -> dict[str, Any]:
        """``GET /version``: the reachability check made before anything else."""
        with self._call("get", "/version"):
            resp = self._client.VersionApi(self._api).get_code(
                _request_timeout=(timeout, timeout), _preload_content=False)
            data: dict[str, Any] = json.loads(resp.data)
            return data

    def _raw(self, fn: Any, *args: Any, **kw: Any) -> dict[str, Any] | None:
        try:
            resp = fn(*args, _preload_content=False, **kw)
        except Exception as e:
            if self.not_found(e):
                return None
            raise
        data: dict[str, Any] = json.loads(resp.data)
        return data

    def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._call("get", "pods", namespace, name):
            return self._raw(self._core.read_namespaced_pod, name, namespace)

    def list_pods(self, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.list_pods_at(namespace, label_selector)[0]

    def list_pods_at(self, namespace: str, label_selector: str | None = None,
                     field_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """The pods and the list's resourceVersion, where a watch of them starts."""
        with self._call("list", "pods", namespace):
            doc = self._raw(self._core.list_namespaced_pod, namespace,
                            **_selectors(label_selector, field_selector)) or {}
        items: list[dict[str, Any]] = doc.get("items") or []
        return items, str((doc.get("metadata") or {}).get("resourceVersion") or "")

    def watch_pods(self, namespace: str, resource_version: str, timeout: float, *,
                   label_selector: str | None = None, field_selector: str | None = None
                   ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(type, pod document)`` for every change after ``resource_version`` (``ADDED``,
        ``MODIFIED``, ``DELETED``, ``BOOKMARK``), as the API server sends it, until the server
        ends the watch after ``timeout`` seconds (rounded up: the API counts whole seconds).
        Raises :class:`WatchExpired` when ``resource_version`` is too old (410 Gone)."""
        w = _k8s("kubernetes.watch").Watch()
        seconds = max(1, math.ceil(timeout))
        with self._call("watch", "pods", namespace):
            stream = w.stream(self._core.list_namespaced_pod, namespace,
                              resource_version=resource_version or None,
                              timeout_seconds=seconds, allow_watch_bookmarks=True,
                              _request_timeout=(10, seconds + 10),
                              **_selectors(label_selector, field_selector))
            try:
                for event in stream:
                    yield str(event.get("type")), dict(event.get("raw_object") or {})
            except Exception as e:
                # With timeout_seconds the client does not retry: an ERROR event with code
                # 410 (or a 410 answer to the request) comes here as ApiException(410).
                if getattr(e, "status", None) == GONE:
                    raise WatchExpired(f"watch pods -n {namespace}: resourceVersion "
                                       f"{resource_version} expired (410 Gone)") from None
                raise
            finally:
                w.stop()
                stream.close()  # the response is released now, not when collected

    def read_namespace(self, name: str) -> dict[str, Any] | None:
        with self._call("get", "namespaces", None, name):
            return self._raw(self._core.read_namespace, name)

    # ------------------------------------------------------------------ writes

    def _resource(self, obj: Obj) -> Any:
        if self._dyn is None:
            dynamic = _k8s("kubernetes.dynamic")
            with self._call("discover", "API resources"):
                self._dyn = dynamic.DynamicClient(self._api)
        with self._call("discover", str(obj.get("kind"))):
            return self._dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])

    def apply(self, obj: Obj) -> dict[str, Any]:
        """Server-side apply (create or update), owned by field manager ``pytest-ztfl``."""
        meta = obj.get("metadata") or {}
        res = self._resource(obj)
        with self._call("patch", f"{res.name}", meta.get("namespace"), meta.get("name")):
            out = self._dyn.server_side_apply(res, body=obj, field_manager=FIELD_MANAGER,
                                              force_conflicts=True)
            data: dict[str, Any] = out.to_dict()
            return data

    def delete(self, obj: Obj, *, grace_seconds: int | None = None) -> bool:
        """Delete one object; False if it was not there."""
        meta = obj.get("metadata") or {}
        res = self._resource(obj)
        kw: dict[str, Any] = {"propagation_policy": "Background"}
        if grace_seconds is not None:
            kw["grace_period_seconds"] = grace_seconds
        with self._call("delete", f"{res.name}", meta.get("namespace"), meta.get("name")):
            try:
                self._dyn.delete(res, name=meta.get("name"), namespace=meta.get("namespace"),
                                 **kw)
            except Exception as e:
                if self.not_found(e):
                    return False
                raise
        return True

    # ------------------------------------------------------------------ streams

    def pod_log(self, namespace: str, pod: str, container: str | None, *, follow: bool,
                timeout: float | None) -> Iterator[str]:
        """The container's log lines; with ``follow`` until it ends or ``timeout`` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._call("get", "pods/log", namespace, pod):
            resp = self._core.read_namespaced_pod_log(
                pod, namespace, container=container, follow=follow, _preload_content=False,
                _request_timeout=None if timeout is None else (10, timeout))
        try:
            with self._call("get", "pods/log", namespace, pod):
                for line in split_lines(resp.stream(4096, decode_content=True)):
                    yield line
                    if deadline is not None and time.monotonic() > deadline:
                        return
        finally:
            resp.release_conn()

    def exec(self, namespace: str, pod: str, argv: list[str], container: str | None,
             timeout: float, input: str | None) -> ExecResult:
        stream = _k8s("kubernetes.stream")
        with self._call("create", "pods/exec", namespace, pod):
            ws = stream.stream(self._core.connect_get_namespaced_pod_exec, pod, namespace,
                               command=argv, container=container, stdin=input is not None,
                               stdout=True, stderr=True, tty=False, _preload_content=False)
        out: list[str] = []
        err: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            if input is not None:
                ws.write_stdin(input)
                close = getattr(ws, "close_channel", None)  # EOF: v5 protocol, client >= 32
                if close is not None:
                    close(0)
            while ws.is_open() and time.monotonic() < deadline:
                ws.update(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
                if ws.peek_stdout():
                    out.append(ws.read_stdout())
                if ws.peek_stderr():
                    err.append(ws.read_stderr())
            timed_out = ws.is_open()
            out.append(ws.read_stdout(timeout=0) if ws.peek_stdout() else "")
            err.append(ws.read_stderr(timeout=0) if ws.peek_stderr() else "")
            status = ws.read_channel(ERROR_CHANNEL)
        finally:
            ws.close()
        if timed_out:
            return ExecResult(124, "".join(out), "".join(err) + f"\ntimed out after {timeout}s")
        return ExecResult(exec_exit_code(status), "".join(out), "".join(err))
