"""Typed security contexts: what a pod's and a container's ``securityContext`` ask of the
process, merged the Kubernetes way (a container's field overrides the pod's).

The local backend applies the result to each container's processes (user and group, no new
privileges, capabilities, seccomp, a read-only root filesystem: :mod:`k8s_fixtures.local.confine`);
fields it does not act on are checked for shape only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from k8s_fixtures.cluster import Obj
from k8s_fixtures.metadata import fail

SECCOMP_TYPES = ("RuntimeDefault", "Unconfined", "Localhost")


@dataclass(frozen=True)
class SecurityContext:
    """One container's effective security context (None: not set, the backend's default)."""

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    read_only_root: bool = False
    allow_privilege_escalation: bool | None = None
    caps_add: tuple[str, ...] = ()
    caps_drop: tuple[str, ...] = ()
    seccomp: str | None = None  # RuntimeDefault | Unconfined | Localhost

    @property
    def confined(self) -> bool:
        """Whether anything asks the process to be less than the backend's default."""
        return self != SecurityContext(caps_add=self.caps_add)

    def to_json(self) -> dict[str, Any]:
        return {"run_as_user": self.run_as_user, "run_as_group": self.run_as_group,
                "run_as_non_root": self.run_as_non_root, "read_only_root": self.read_only_root,
                "no_new_privs": self.allow_privilege_escalation is False,
                "caps_drop": list(self.caps_drop), "caps_add": list(self.caps_add),
                "seccomp": self.seccomp}


def _bool(obj: Obj, path: str, v: Any) -> bool | None:
    if v is None or isinstance(v, bool):
        return v
    raise fail(obj, path, "must be true or false")


def _id(obj: Obj, path: str, v: Any) -> int | None:
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 2**31 - 1:
        raise fail(obj, path, f"{v!r} is not a user/group id (0-2147483647)")
    return v


def _caps(obj: Obj, path: str, v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
        raise fail(obj, path, "must be a list of capability names")
    return tuple(s.upper().removeprefix("CAP_") for s in v)


def _seccomp(obj: Obj, path: str, v: Any) -> str | None:
    if v is None:
        return None
    kind = v.get("type") if isinstance(v, Mapping) else None
    if kind not in SECCOMP_TYPES:
        raise fail(obj, f"{path}.type", f"{kind!r}: use one of {', '.join(SECCOMP_TYPES)}")
    return str(kind)


def _mapping(obj: Obj, path: str, v: Any) -> Mapping[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise fail(obj, path, "must be a mapping")
    return v


def parse(obj: Obj, pod_sc: Any, container_sc: Any, pod_path: str,
          path: str) -> SecurityContext:
    """The container's effective context from the pod's (at ``pod_path``) and its own."""
    pod = _mapping(obj, pod_path, pod_sc)
    own = _mapping(obj, path, container_sc)
    caps = _mapping(obj, f"{path}.capabilities", own.get("capabilities"))
    for key in caps:
        if key not in ("add", "drop"):
            raise fail(obj, f"{path}.capabilities.{key}", "not supported (add, drop)")

    def either(key: str, check: Any) -> Any:
        mine = check(obj, f"{path}.{key}", own.get(key))
        return mine if mine is not None else check(obj, f"{pod_path}.{key}", pod.get(key))

    return SecurityContext(
        run_as_user=either("runAsUser", _id),
        run_as_group=either("runAsGroup", _id),
        run_as_non_root=either("runAsNonRoot", _bool),
        read_only_root=bool(_bool(obj, f"{path}.readOnlyRootFilesystem",
                                  own.get("readOnlyRootFilesystem"))),
        allow_privilege_escalation=_bool(obj, f"{path}.allowPrivilegeEscalation",
                                         own.get("allowPrivilegeEscalation")),
        caps_add=_caps(obj, f"{path}.capabilities.add", caps.get("add")),
        caps_drop=_caps(obj, f"{path}.capabilities.drop", caps.get("drop")),
        seccomp=either("seccompProfile", _seccomp),
    )
