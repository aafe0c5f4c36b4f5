"""Reading and checking Kubernetes objects: YAML files or dicts in, typed pod specs out.

Every error is one line ``Kind namespace/name: field.path: what is wrong`` so a user can find
the offending line of their manifest. Only the fields the backends act on are parsed into
types; the rest of an object is kept as is and passed through.

This module loads objects (:func:`load`) and reads data objects and workload templates; the
metadata checks and error format live in :mod:`k8s_fixtures.metadata`, resource quantities in
:mod:`k8s_fixtures.quantities`, typed pod specs in :mod:`k8s_fixtures.podspec`. Every name is
importable from here as before.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from k8s_fixtures.cluster import ManifestError, Obj, Objects
from k8s_fixtures.metadata import (
    CLUSTER_SCOPED,
    annotations_of,
    check_metadata,
    fail,
    labels_of,
    namespace_of,
    ref,
    selector_matches,
    where,
)
from k8s_fixtures.podspec import (
    Container,
    ContainerPort,
    EnvVar,
    PodSpec,
    Probe,
    Volume,
    VolumeMount,
    parse_pod_spec,
)
from k8s_fixtures.quantities import cpu_millis, memory_bytes

# The names this module has always offered; they live in .metadata, .quantities, .podspec.
__all__ = [
    "CLUSTER_SCOPED",
    "Container",
    "ContainerPort",
    "EnvVar",
    "PodSpec",
    "Probe",
    "Volume",
    "VolumeMount",
    "annotations_of",
    "check_metadata",
    "config_data",
    "cpu_millis",
    "fail",
    "labels_of",
    "load",
    "match_labels",
    "memory_bytes",
    "namespace_of",
    "parse_pod_spec",
    "ref",
    "selector_matches",
    "template_meta",
    "where",
]


# ---------------------------------------------------------------------------- loading


def load(objects: Objects) -> list[Obj]:
    """Objects from a dict, an iterable of dicts, or a YAML file (multi-document, ``List``)."""
    if isinstance(objects, str | Path):
        path = Path(objects)
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except OSError as e:
            raise ManifestError(f"{path}: cannot read: {e.strerror}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ManifestError(f"{path}:{line}: not valid YAML: {problem}") from None
        raw: list[Any] = [d for d in docs if d is not None]
        source = str(path)
    elif isinstance(objects, Mapping):
        raw, source = [objects], "object"
    else:
        raw, source = list(objects), "objects"
    out: list[Obj] = []
    for i, doc in enumerate(raw):
        if not isinstance(doc, Mapping):
            raise ManifestError(f"{source}[{i}]: expected a mapping, got {type(doc).__name__}")
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(load(doc["items"]))
        else:
            out.append(dict(doc))
    for obj in out:
        check_metadata(obj)
    return out


# ---------------------------------------------------------------------------- data objects


def config_data(obj: Obj) -> dict[str, bytes]:
    """The files of a ConfigMap (``data``, ``binaryData``) or Secret (``data``, ``stringData``)."""
    out: dict[str, bytes] = {}
    secret = obj["kind"] == "Secret"
    fields = ("data", "stringData") if secret else ("data", "binaryData")
    for f in fields:
        d = obj.get(f) or {}
        if not isinstance(d, Mapping):
            raise fail(obj, f, "must be a mapping")
        for k, v in d.items():
            if not isinstance(k, str) or not re.match(r"^[-._a-zA-Z0-9]+$", k):
                raise fail(obj, f"{f}.{k}", "is not a valid key")
            if not isinstance(v, str):
                raise fail(obj, f"{f}.{k}", "must be a string")
            if (secret and f == "data") or f == "binaryData":
                try:
                    out[k] = base64.b64decode(v, validate=True)
                except binascii.Error:
                    raise fail(obj, f"{f}.{k}", "is not valid base64") from None
            else:
                out[k] = v.encode()
    return out


def template_meta(obj: Obj, path: str = "spec.template") -> tuple[
        dict[str, str], dict[str, str], Any]:
    """(labels, annotations, spec) of a workload's pod template."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("template"), Mapping):
        raise fail(obj, path, "required (a mapping)")
    tmpl = spec["template"]
    meta = tmpl.get("metadata") or {}
    if not isinstance(meta, Mapping):
        raise fail(obj, f"{path}.metadata", "must be a mapping")
    out: list[dict[str, str]] = []
    for key in ("labels", "annotations"):
        m = meta.get(key) or {}
        if not isinstance(m, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in m.items()
        ):
            raise fail(obj, f"{path}.metadata.{key}", "must map strings to strings")
        out.append(dict(m))
    return out[0], out[1], tmpl.get("spec")


def match_labels(obj: Obj, path: str) -> dict[str, str]:
    """A ``{matchLabels: ...}`` selector (matchExpressions are rejected)."""
    sel = obj.get("spec", {}).get("selector")
    if sel is None:
        return {}
    if not isinstance(sel, Mapping):
        raise fail(obj, path, "must be a mapping")
    extra = [k for k in sel if k != "matchLabels"]
    if extra:
        raise fail(obj, f"{path}.{extra[0]}", "not supported (use matchLabels)")
    ml = sel.get("matchLabels") or {}
    if not isinstance(ml, Mapping):
        raise fail(obj, f"{path}.matchLabels", "must be a mapping")
    return {str(k): str(v) for k, v in ml.items()}
