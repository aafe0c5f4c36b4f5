"""MomentumSGD is torch.optim.SGD's CPU update, bit for bit, and spares the client its imports."""

from __future__ import annotations

import subprocess
import sys

import torch
from torch.nn import functional as F

from fl_app.models import build_model
from fl_app.train import MomentumSGD


def _train(use_torch: bool, steps: int = 12) -> dict[str, torch.Tensor]:
    model = build_model("small", 3)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(64, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (64,), generator=gen)
    opt: torch.optim.SGD | MomentumSGD
    if use_torch:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = MomentumSGD(model.parameters(), lr=0.05, momentum=0.9)
    for i in range(steps):
        idx = torch.arange(i * 5 % 64, i * 5 % 64 + 16) % 64
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()  # type: ignore[no-untyped-call]
        opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_momentum_sgd_matches_torch_optim_sgd_bitwise() -> None:
    ours, theirs = _train(False), _train(True)
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k


def test_client_training_imports_no_dynamo() -> None:
    code = ("import sys, torch\n"
            "from fl_app.models import build_model\n"
            "from fl_app.train import train_local, warm_up\n"
            "warm_up()\n"
            "m = build_model('small', 0)\n"
            "x, y = torch.randn(40, 1, 28, 28), torch.randint(0, 10, (40,))\n"
            "train_local(m, x, y, epochs=1, batch_size=8, lr=0.05, momentum=0.9,"
            " max_steps=0, seed=1)\n"
            "print(sorted(n for n in sys.modules if n.startswith(('torch._dynamo', 'sympy'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
