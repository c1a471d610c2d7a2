"""`Net` as training runs it on CPU: the same function and the same weights, at less cost.

Profiling one bf16 channels-last training step of `Net` (batch 256, 2 CPU threads;
bench/README.md names the CPU and the figures) found three costs that are not the network's
arithmetic:

- `nn.Dropout` draws its mask with `bernoulli_`, one random number per element: for dropout1's
  256 × 9,216 activations that took longer than the forward convolutions. `Dropout` here takes
  seven mask bytes from each random 64-bit word (torch draws them in [0, 2⁶³), so the top byte
  is never above 127 and is left out), and a byte keeps its element when it is below
  256·(1 − p): exactly the keep probability 1 − p whenever 256·(1 − p) is a whole number (0.75
  and 0.5 for `Net`'s two dropouts). Kept elements are scaled by 1/(1 − p), as nn.Dropout does.
- `torch.flatten` after dropout1 turns the channels-last activations into NCHW order, so in the
  backward pass max-pool's gradient arrived in the other memory format and its backward kernel
  converted both tensors. `Dropout` hands flatten an NCHW tensor itself (one cheap copy) and turns
  the gradient back into the input's memory format, so max-pool's backward runs its fast path.
- ReLU before the 2×2 max-pool touches four times the elements ReLU after it does, forward and
  backward. ReLU is monotonic, so relu(max(a, b, …)) = max(relu(a), relu(b), …) exactly, and the
  gradients agree too; `TrainingNet.forward` pools first (tests/model/test_trainnet.py checks
  outputs and gradients equal `Net`'s).

`TrainingNet` is a `Net` (same modules, same parameter names); `as_net` copies its weights into
a plain `Net`, which is what is evaluated, quantized and saved, so serving needs nothing of this.
`features` and `head` split the forward pass at the first dropout: once both convolutions stop
training, model/fit.py computes `features` once per training image and trains `head` on them.
The masks come from torch's default generator, so a seeded run stays deterministic.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from model.net import Net

LEVELS = 256  # a mask byte's values


def keep_threshold(p: float) -> int | None:
    """The byte value below which an element is kept, or None when 256·(1 − p) is not whole
    (then this dropout would not draw exactly 1 − p, and nn.Dropout stays)."""
    threshold = LEVELS * (1.0 - p)
    return int(threshold) if 0 < threshold < LEVELS and threshold == int(threshold) else None


BYTES_PER_WORD = 7  # of a random_() int64's eight: the uniform ones (little-endian, top byte last)


def random_bytes(n: int) -> torch.Tensor:
    """`n` independent uniform bytes from torch's default generator."""
    words = torch.empty(-(-n // BYTES_PER_WORD), dtype=torch.int64).random_()
    return words.view(torch.uint8).view(-1, 8)[:, :BYTES_PER_WORD].reshape(-1)[:n]


def keep_mask(shape: torch.Size, threshold: int) -> torch.Tensor:
    """A bool mask of `shape`, each element True with probability threshold/256."""
    return (random_bytes(shape.numel()) < threshold).view(shape)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:  # type: ignore[override]
        factor = keep_mask(x.shape, threshold).to(x.dtype).mul_(scale)
        ctx.save_for_backward(factor)
        ctx.channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        return (x * factor).contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (factor,) = ctx.saved_tensors
        out = grad * factor
        if ctx.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out, None, None


class Dropout(nn.Module):
    """nn.Dropout(p) with a cheaper mask (see the module docstring); the identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        threshold = keep_threshold(p)
        if threshold is None:
            raise ValueError(f"dropout p={p}: 256·(1 − p) is not a whole number")
        self.p, self.threshold, self.scale = p, threshold, 1.0 / (1.0 - p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return _Dropout.apply(x, self.threshold, self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class TrainingNet(Net):
    """`Net` with max-pool before ReLU and `Dropout` for its dropouts (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.dropout1 = Dropout(self.dropout1.p)
        self.dropout2 = Dropout(self.dropout2.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return head(self, features(self, x))


def features(net: Net, x: torch.Tensor) -> torch.Tensor:
    """`net` up to its first dropout: the convolutions, max-pool and ReLUs (no randomness, so
    the same in training and eval mode). Max-pool comes before ReLU: the same values, since
    ReLU is monotonic (relu(max(a, b, …)) = max(relu(a), relu(b), …)), for any `Net`."""
    x = F.relu(net.conv1(x))
    return F.relu(F.max_pool2d(net.conv2(x), 2))


def head(net: Net, x: torch.Tensor) -> torch.Tensor:
    """The rest of `net` after `features`: dropout, fc1, ReLU, dropout, fc2, log-softmax. Takes
    `features`' output as is or flattened to (N, 9216)."""
    x = torch.flatten(net.dropout1(x), 1)
    x = net.dropout2(F.relu(net.fc1(x)))
    return F.log_softmax(net.fc2(x), dim=1)


def as_net(trained: nn.Module) -> Net:
    """A plain `Net` holding `trained`'s weights (float32, contiguous, on the CPU, eval mode)."""
    net = Net()
    net.load_state_dict({k: v.detach().float().cpu().contiguous() for k, v in trained.state_dict().items()})
    return net.eval()
