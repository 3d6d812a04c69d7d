"""The UNet of the paper's figure 2 (CNN), also the body of SACNN.

Four down-sampling stages, each two 3x3 convolutions + ReLU followed by a 2x2 max-pool; a
bottleneck of two 3x3 convolutions; four up-sampling stages, each a bilinear x2 up-sampling,
concatenation with the long skip connection of the same scale, and two 3x3 convolutions +
ReLU; a 1x1 convolution to one logit per pixel. No transposed convolutions (checkerboard
artefacts, paper section 1), no short skips, no batch normalisation (as the paper's code).

Widths: ``widths`` = channels of the five scales. The paper does not print them; its public
code's UNet uses (64, 128, 256, 512, 512), the ``paper`` preset's default here. The ``quick``
presets use narrower widths. The input is zero-padded (0 = the training mean after
standardisation) to a multiple of 16 px and the output cropped back, so any H, W works.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from geoslide.errors import InputError

MULTIPLE = 16  # 2 ** (number of pooling stages)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """(B, C, H, W) -> logits (B, 1, H, W); ``widths`` of the 5 scales, ``dropout`` before
    the last 1x1 convolution and in the bottleneck."""

    aligned = False

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int] = (64, 128, 256, 512, 512),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) != 5:
            raise InputError(f"UNet widths must list 5 scales (4 down stages + bottleneck); got {widths}")
        self.config = {"in_channels": int(in_channels), "widths": widths, "dropout": float(dropout)}
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths[:4]:
            self.down.append(_double_conv(c, w))
            c = w
        self.bottom = _double_conv(c, widths[4])
        self.up = nn.ModuleList()
        c = widths[4]
        for skip in reversed(widths[:4]):
            self.up.append(_double_conv(c + skip, skip))
            c = skip
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Conv2d(c, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return self.after_first(self.down[0][0](x))[..., :h, :w]

    def after_first(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the first convolution's output ``x`` (B, widths[0], H, W), H and W
        multiples of 16: the network but that convolution."""
        skips = []
        for i, block in enumerate(self.down):
            x = block[1:](x) if i == 0 else block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.drop(self.bottom(x))
        for block, skip in zip(self.up, reversed(skips)):
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = block(torch.cat([skip, x], dim=1))
        return self.head(self.drop(x))
