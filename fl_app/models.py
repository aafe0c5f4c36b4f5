"""The two CNNs the workload trains: the seed study's paper CNN and a small CNN for fast runs.

* ``paper``: conv3x3(32) - conv3x3(64) - maxpool - fc128 - fc10, 1,199,882 parameters (~4.8 MB
  as float32), the PyTorch MNIST example architecture the seed study used.
* ``small``: conv5x5(16) - pool - conv5x5(32) - pool - fc64 - fc10, 46,730 parameters, so a
  round's compute is small and network and TLS costs show up clearly.

Initial weights depend only on the seed: same seed, same bytes.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from fl_app.model_sizes import MODELS


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


class PaperCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


_GLOBAL_RNG = threading.Lock()


def build_model(name: str, seed: int = 0) -> nn.Module:
    """A fresh model whose initial weights are a function of ``seed`` alone."""
    classes: dict[str, type[nn.Module]] = {"small": SmallCNN, "paper": PaperCNN}
    if name not in classes:
        raise ValueError(f"model {name!r}: expected one of {', '.join(MODELS)}")
    # nn layers draw their initial weights from torch's global generator: threads building
    # models at once (cells measured in parallel) would interleave their draws
    with _GLOBAL_RNG:
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            return classes[name]()
        finally:
            torch.random.set_rng_state(gen_state)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
