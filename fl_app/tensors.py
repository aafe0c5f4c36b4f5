"""Model weights on the wire: state dicts <-> ``Weights`` messages, and validation of updates.

Weights travel as raw little-endian float32 bytes with name, dtype and shape (never pickle).
An incoming update is checked against the global model's layout before it is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fl_app.proto import fl_pb2

NDArrays = dict[str, np.ndarray]
DTYPES = {"float32": np.dtype("<f4")}


class UpdateError(ValueError):
    """An update does not fit the model; ``reason`` is a stable short code for events."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Layout:
    """The names, shapes and dtypes a valid update must have, in order."""

    entries: tuple[tuple[str, tuple[int, ...], str], ...]

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray]) -> Layout:
        return cls(
            tuple((k, tuple(int(d) for d in v.shape), str(v.dtype)) for k, v in arrays.items())
        )

    @property
    def nbytes(self) -> int:
        return sum(int(np.prod(s)) * DTYPES[d].itemsize for _, s, d in self.entries)


def to_proto(arrays: Mapping[str, np.ndarray]) -> fl_pb2.Weights:
    out = fl_pb2.Weights()
    for name, arr in arrays.items():
        # asarray, not ascontiguousarray: the latter turns a 0-d tensor into shape [1].
        # tobytes() writes C order whatever the memory layout.
        a = np.asarray(arr, dtype=DTYPES["float32"])
        out.tensors.add(name=name, dtype="float32", shape=list(a.shape), data=a.tobytes())
    return out


def from_proto(msg: fl_pb2.Weights, layout: Layout | None = None) -> NDArrays:
    """Decode weights; with ``layout``, refuse anything that does not match it exactly."""
    if layout is not None and len(msg.tensors) != len(layout.entries):
        raise UpdateError(
            "bad_shape", f"{len(msg.tensors)} tensors, model has {len(layout.entries)}"
        )
    out: NDArrays = {}
    for i, t in enumerate(msg.tensors):
        dtype = DTYPES.get(t.dtype)
        if dtype is None:
            raise UpdateError("bad_dtype", f"tensor {t.name!r} has dtype {t.dtype!r}")
        shape = tuple(int(d) for d in t.shape)
        if layout is not None:
            name, want_shape, want_dtype = layout.entries[i]
            if t.name != name or shape != want_shape:
                raise UpdateError(
                    "bad_shape",
                    f"tensor {i} is {t.name!r}{list(shape)}, want {name!r}{list(want_shape)}",
                )
            if t.dtype != want_dtype:
                raise UpdateError("bad_dtype", f"tensor {t.name!r} has dtype {t.dtype!r}")
        if any(d < 0 for d in shape) or len(t.data) != int(np.prod(shape)) * dtype.itemsize:
            raise UpdateError(
                "bad_shape",
                f"tensor {t.name!r}: {len(t.data)} bytes do not fit shape {list(shape)}",
            )
        arr = np.frombuffer(t.data, dtype=dtype).reshape(shape)
        if not np.isfinite(arr).all():
            raise UpdateError("non_finite", f"tensor {t.name!r} holds NaN or Inf")
        out[t.name] = arr
    return out


def state_to_arrays(state: Mapping[str, object]) -> NDArrays:
    """A torch state dict as float32 numpy arrays (copies, detached from the model)."""
    import torch

    out: NDArrays = {}
    for k, v in state.items():
        assert isinstance(v, torch.Tensor)
        out[k] = v.detach().cpu().numpy().astype(np.float32, copy=True)
    return out
