"""Local SGD training and evaluation, on in-memory tensors (no DataLoader: no worker processes,
no per-batch Python overhead beyond slicing)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fl_app.tensors import NDArrays, state_to_arrays


@dataclass(frozen=True)
class TrainResult:
    weights: NDArrays
    num_samples: int
    seconds: float
    loss: float


def warm_up() -> None:
    """Pay torch's one-off lazy imports now, not inside the first timed ``train_local``.

    Creating the first optimizer of a process imports ~900 modules (torch._dynamo, sympy, ...):
    1.3-2.8 s on a 2-core machine, which otherwise lands in round 1's ``train_seconds``.
    """
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)


def load_arrays(model: nn.Module, arrays: NDArrays) -> None:
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})


def train_local(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    max_steps: int,
    seed: int,
) -> TrainResult:
    """Train ``model`` in place with SGD; the shuffle order is a function of ``seed``."""
    start = time.perf_counter()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    steps, total_loss = 0, 0.0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total_loss += loss.item()
            steps += 1
            if max_steps and steps >= max_steps:
                break
        if max_steps and steps >= max_steps:
            break
    return TrainResult(
        weights=state_to_arrays(model.state_dict()),
        num_samples=len(x),
        seconds=time.perf_counter() - start,
        loss=total_loss / max(steps, 1),
    )


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy loss) of ``model`` on the given set."""
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch):
        out = model(x[i : i + batch])
        loss += float(F.cross_entropy(out, y[i : i + batch], reduction="sum"))
        correct += int((out.argmax(1) == y[i : i + batch]).sum())
    return correct / len(x), loss / len(x)
