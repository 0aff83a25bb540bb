"""PyTorch kernels: Conv2D by PyTorch's own convolution on its tensors (oneDNN on CPU, cuDNN on CUDA).

Our images are channels-last ``(n, h, w, c)``; ``permute(0, 3, 1, 2)`` views that memory as NCHW in PyTorch's
``channels_last`` format, which its convolutions take without a copy.  The padding is done by the layer (the
padded input comes in), so the convolution runs with none.  Equal to the portable path to rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

__all__ = ["conv_backward", "conv_forward"]


def conv_forward(xpad: torch.Tensor, weight: torch.Tensor, window: Any, oh: int, ow: int) -> tuple[torch.Tensor, Any]:
    """``conv(xpad, weight)`` as ``(n, oh, ow, out)`` (no bias); backward needs the padded input."""
    x = xpad.permute(0, 3, 1, 2)
    y = functional.conv2d(x, weight.permute(3, 2, 0, 1), None, window.stride, 0, window.dilation)
    return y.permute(0, 2, 3, 1), x


def conv_backward(saved: Any, dvalue: torch.Tensor, weight: torch.Tensor, window: Any, hp: int, wp: int,
                  need_dinput: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``dweight`` ``(kh, kw, in, out)`` and the padded ``dinput`` (None unless asked): one call of PyTorch's
    convolution backward for both."""
    dinput, dweight, _ = torch.ops.aten.convolution_backward(
        dvalue.permute(0, 3, 1, 2), saved, weight.permute(3, 2, 0, 1), None, list(window.stride), [0, 0],
        list(window.dilation), False, [0, 0], 1, [need_dinput, True, False])
    return dweight.permute(2, 3, 1, 0), dinput.permute(0, 2, 3, 1) if need_dinput else None
