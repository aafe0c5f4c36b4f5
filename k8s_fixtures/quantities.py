"""Kubernetes resource quantities: CPU (``500m``, ``0.5``) in millicores, memory (``64Mi``,
``1G``) in bytes, as ``resources.limits`` and the matrix's resource settings give them."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_MEM_SUFFIX = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def cpu_millis(value: Any) -> int:
    """A CPU quantity (``"500m"``, ``1``, ``"0.25"``) in millicores."""
    m = _QUANTITY.match(str(value).strip())
    if not m or (m.group(2) not in (None, "m")):
        raise ValueError(f"{value!r} is not a CPU quantity (e.g. 500m, 0.5, 2)")
    try:
        n = Decimal(m.group(1))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a CPU quantity") from None
    millis = n if m.group(2) == "m" else n * 1000
    if millis < 1:
        raise ValueError(f"{value!r} is below 1m")
    return int(millis.to_integral_value(rounding="ROUND_CEILING"))


def memory_bytes(value: Any) -> int:
    """A memory quantity (``"64Mi"``, ``"1G"``, ``134217728``) in bytes."""
    m = _QUANTITY.match(str(value).strip())
    if not m or m.group(2) == "m":
        raise ValueError(f"{value!r} is not a memory quantity (e.g. 64Mi, 1G, 1000000)")
    try:
        n = Decimal(m.group(1)) * _MEM_SUFFIX[m.group(2) or ""]
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a memory quantity") from None
    if n < 4096:
        raise ValueError(f"{value!r} is below 4Ki")
    return int(n)
