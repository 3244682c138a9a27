"""Optimisers that the GUI may run: plain tensor ops, nothing from ``torch.optim``."""

from __future__ import annotations


class Adam:
    """Adam (Kingma & Ba) on one tensor, in plain tensor ops.

    Not ``torch.optim.Adam``: its first ``step`` imports ``torch._dynamo`` and ``triton``, which
    segfaults a process that already holds napari's OpenGL context (Xvfb / Mesa). The step count
    lives on the tensor's device, so a step can be captured in a CUDA graph and replayed.
    """

    def __init__(self, variable, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        import torch

        self.variable, self.lr, self.betas, self.eps = variable, lr, betas, eps
        self.first = torch.zeros_like(variable)
        self.second = torch.zeros_like(variable)
        self.steps = torch.zeros((), dtype=torch.float32, device=variable.device)

    def step(self, gradient) -> None:
        import torch

        beta1, beta2 = self.betas
        with torch.no_grad():
            self.steps.add_(1.0)
            self.first.mul_(beta1).add_(gradient, alpha=1 - beta1)
            self.second.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
            first = self.first / (1.0 - beta1**self.steps)
            second = self.second / (1.0 - beta2**self.steps)
            self.variable.sub_(self.lr * first / (second.sqrt() + self.eps))
