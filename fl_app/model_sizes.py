"""Model names and parameter counts without importing torch.

The plugin validates matrices and checks round budgets at configure time, where importing torch
(seconds) would slow every ``pytest`` invocation; :mod:`fl_app.models` builds the models and a
test keeps these counts equal to the built ones.
"""

from __future__ import annotations

PARAMETERS: dict[str, int] = {"small": 46_730, "paper": 1_199_882}
MODELS: tuple[str, ...] = tuple(PARAMETERS)
BYTES_PER_PARAMETER = 4  # float32 on the wire (fl_app.tensors)


def model_bytes(name: str) -> int:
    """Bytes of one model's weights as sent in a round (each way), framing not counted."""
    return PARAMETERS[name] * BYTES_PER_PARAMETER
