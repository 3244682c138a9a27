"""Optimisers that the GUI may run: plain tensor ops, nothing from ``torch.optim``.

Both keep their state on the tensor's device and make no host-side decision per step, so a step
can be captured in a CUDA graph and replayed (``texture`` does, after a short warm-up).
"""

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


class LBFGS:
    """L-BFGS with a fixed step (as torch's without line search) and no host synchronisation.

    The curvature pairs sit newest-last in fixed buffers that shift by one each step, and every
    slot always takes part in the two-loop recursion: an empty slot, or a pair with
    ``y.s <= 1e-10``, has ``rho = 0`` and contributes nothing. So from the second step on each
    step is the same sequence of kernels with no host-side decision (CUDA-graph capturable).
    ``step`` keeps ``image`` in 0..1 and replaces non-finite gradient entries by 0.
    """

    def __init__(self, image, history: int = 10, lr: float = 1.0):
        size = image.numel()
        self.image, self.history, self.lr = image, history, lr
        self.s = image.new_zeros(history, size)
        self.y = image.new_zeros(history, size)
        self.rho = image.new_zeros(history)
        self.h_diag = image.new_ones(())
        self.previous_x = image.new_zeros(size)
        self.previous_g = image.new_zeros(size)
        self.started = False

    def step(self, grad) -> None:
        import torch

        g = grad.reshape(-1)
        g = torch.where(torch.isfinite(g), g, torch.zeros_like(g))  # a bad step must not poison x
        x = self.image.detach().view(-1)
        if self.started:
            s, y = x - self.previous_x, g - self.previous_g
            ys, yy = y.dot(s), y.dot(y)
            valid = ys > 1e-10
            for buffer, newest in ((self.s, s), (self.y, y)):
                buffer[:-1].copy_(buffer[1:].clone())
                buffer[-1].copy_(newest)
            self.rho[:-1].copy_(self.rho[1:].clone())
            self.rho[-1].copy_(torch.where(valid, 1.0 / ys.clamp_min(1e-10), torch.zeros_like(ys)))
            self.h_diag.copy_(torch.where(valid, ys / yy.clamp_min(1e-30), self.h_diag))
        direction = -g
        alphas = [None] * self.history
        for i in range(self.history - 1, -1, -1):  # newest first
            alphas[i] = self.rho[i] * self.s[i].dot(direction)
            direction = direction - alphas[i] * self.y[i]
        direction = direction * self.h_diag
        for i in range(self.history):
            beta = self.rho[i] * self.y[i].dot(direction)
            direction = direction + (alphas[i] - beta) * self.s[i]
        step: float | torch.Tensor
        if self.started:
            step = self.lr
        else:  # first step: as torch, scaled by the gradient's size
            step = torch.clamp(1.0 / g.abs().sum().clamp_min(1e-12), max=1.0) * self.lr
        self.previous_x.copy_(x)
        self.previous_g.copy_(g)
        with torch.no_grad():
            x.add_(direction * step)
            x.clamp_(0.0, 1.0)
        self.started = True
