"""Object identity and metadata: where an object is, its reference, the one-line error that
names it, the checks of ``apiVersion``/``kind``/``metadata``, and its labels and selectors.

Every error is one line ``Kind namespace/name: field.path: what is wrong`` (:func:`fail`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from k8s_fixtures.cluster import ManifestError, ObjectRef

CLUSTER_SCOPED = frozenset({"Namespace"})
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def where(obj: Mapping[str, Any]) -> str:
    """``Kind ns/name`` (or ``Kind name``) for error messages, tolerant of broken objects."""
    kind = obj.get("kind") or "<no kind>"
    raw = obj.get("metadata")
    meta: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    name = meta.get("name") or "<no name>"
    ns = meta.get("namespace") or ("" if kind in CLUSTER_SCOPED else "default")
    return f"{kind} {ns}/{name}" if ns else f"{kind} {name}"


def ref(obj: Mapping[str, Any]) -> ObjectRef:
    kind = str(obj["kind"])
    ns = None if kind in CLUSTER_SCOPED else namespace_of(obj)
    return ObjectRef(kind, ns, str(obj["metadata"]["name"]))


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("namespace") or "default")


def fail(obj: Mapping[str, Any], path: str, msg: str) -> ManifestError:
    return ManifestError(f"{where(obj)}: {path}: {msg}")


def check_metadata(obj: Mapping[str, Any]) -> None:
    """apiVersion, kind, metadata.name/namespace/labels present and well formed."""
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise fail(obj, key, "required (a non-empty string)")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise fail(obj, "metadata", "required (a mapping)")
    name = meta.get("name")
    if not isinstance(name, str) or not _DNS_SUBDOMAIN.match(name) or len(name) > 253:
        raise fail(obj, "metadata.name", f"{name!r} is not a valid name (lower-case DNS name)")
    ns = meta.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not DNS_LABEL.match(ns) or len(ns) > 63):
        raise fail(obj, "metadata.namespace", f"{ns!r} is not a valid namespace name")
    for key in ("labels", "annotations"):
        m = meta.get(key)
        if m is None:
            continue
        if not isinstance(m, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in m.items()
        ):
            raise fail(obj, f"metadata.{key}", "must map strings to strings (quote numbers)")


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Equality-based selector (``matchLabels`` / Service ``selector``)."""
    return all(labels.get(k) == v for k, v in selector.items())


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("annotations") or {})
