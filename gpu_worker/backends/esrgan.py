"""`upscale` with Real-ESRGAN: the RRDBNet generator in plain torch, weights from a local file.

The module names follow BasicSR's `RRDBNet`, so the official `RealESRGAN_x4plus.pth` (its
`params_ema` state dict), `RealESRGAN_x2plus.pth` and the 6-block anime model load as they are;
the architecture (scale, width, depth) is read from the weights. No torchvision or basicsr.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from gpu_worker.backends.errors import missing_weights

logger = logging.getLogger(__name__)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3×3 convolutions; the output is scaled by 0.2 and added to the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        for i in range(4):
            setattr(self, f"conv{i + 1}", nn.Conv2d(num_feat + i * num_grow_ch, num_grow_ch, 3, 1, 1))
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x + 0.2 · conv5([x, f1, f2, f3, f4])`, each `fi` seeing all before it."""
        features = [x]
        for i in range(4):
            conv = getattr(self, f"conv{i + 1}")
            features.append(self.lrelu(conv(torch.cat(features, 1))))
        out: torch.Tensor = self.conv5(torch.cat(features, 1)) * 0.2 + x
        return out


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, scaled by 0.2 and added to the input."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x + 0.2 · rdb3(rdb2(rdb1(x)))`."""
        out: torch.Tensor = self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x
        return out


class RRDBNet(nn.Module):
    """ESRGAN's generator; ×2 and ×1 models pixel-unshuffle the input first and share the ×4 body."""

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        self.scale = scale
        unshuffle = {4: 1, 2: 4, 1: 16}[scale]
        self.conv_first = nn.Conv2d(num_in_ch * unshuffle, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in 0..1, `(N, 3, H, W)` → `(N, 3, H·scale, W·scale)`."""
        feat = F.pixel_unshuffle(x, 4 // self.scale) if self.scale < 4 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out: torch.Tensor = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out


def rrdbnet_from_state_dict(state: dict[str, torch.Tensor]) -> RRDBNet:
    """Build the `RRDBNet` these weights belong to (scale, width, depth, growth read from the tensors) and load them."""
    first = state["conv_first.weight"]
    in_ch = int(state["conv_last.weight"].shape[0])
    scale = {1: 4, 4: 2, 16: 1}[int(first.shape[1]) // in_ch]
    blocks = {int(key.split(".")[1]) for key in state if key.startswith("body.")}
    model = RRDBNet(
        num_in_ch=in_ch,
        num_out_ch=in_ch,
        scale=scale,
        num_feat=int(first.shape[0]),
        num_block=len(blocks),
        num_grow_ch=int(state["body.0.rdb1.conv1.weight"].shape[0]),
    )
    model.load_state_dict(state, strict=True)
    return model


def _params(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The generator's state dict inside an official checkpoint (`params_ema`, else `params`) or a bare one."""
    if isinstance(checkpoint, dict):
        for key in ("params_ema", "params"):
            if isinstance(checkpoint.get(key), dict):
                return checkpoint[key]  # type: ignore[no-any-return]
    return checkpoint  # type: ignore[no-any-return]


class RealEsrgan:
    """Real-ESRGAN from a local `.pth` file, loaded on first use, run tile by tile to bound memory."""

    name = "realesrgan"

    def __init__(self, weights: Path, tile: int = 512, tile_pad: int = 16) -> None:
        if not weights.is_file():
            raise missing_weights(f"Real-ESRGAN weights {weights} (APP_GPU__ESRGAN_WEIGHTS) do not exist")
        self.weights = weights
        self.tile = tile
        self.tile_pad = tile_pad
        self._model: RRDBNet | None = None
        self._lock = threading.Lock()

    @property
    def scale(self) -> int:
        """How many times larger the output is (4 for `RealESRGAN_x4plus`)."""
        return self._load().scale

    def _load(self) -> RRDBNet:
        with self._lock:
            if self._model is None:
                try:
                    state = _params(torch.load(self.weights, map_location="cpu", weights_only=True))
                    model = rrdbnet_from_state_dict(state)
                except Exception as err:  # the unpickler and load_state_dict fail in many ways on a bad file
                    raise missing_weights(f"cannot load Real-ESRGAN weights {self.weights}: {err}") from err
                device = "cuda" if torch.cuda.is_available() else "cpu"
                model = model.eval().to(device)
                self._model = model.half() if device == "cuda" else model
                logger.info("loaded Real-ESRGAN x%d from %s on %s", model.scale, self.weights, device)
            return self._model

    def upscale(self, image: Image.Image) -> Image.Image:
        """Return `image` enlarged `scale` times (RGB)."""
        model = self._load()
        param = next(model.parameters())
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(param.device, param.dtype)
        with torch.inference_mode():
            y = self._run(model, x)
        out = (y[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
        return Image.fromarray(out)

    def _run(self, model: RRDBNet, x: torch.Tensor) -> torch.Tensor:
        """Whole image or tiles with an overlapping margin; input padded to what pixel-unshuffle needs."""
        _, _, h, w = x.shape
        mod = 4 // model.scale
        pad_h, pad_w = (-h) % mod, (-w) % mod
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        s, tile, pad = model.scale, self.tile, self.tile_pad
        ph, pw = x.shape[2], x.shape[3]
        out: torch.Tensor
        if tile <= 0 or (ph <= tile and pw <= tile):
            out = model(x)
        else:
            tile, pad = tile - tile % mod or mod, pad - pad % mod
            out = x.new_zeros(1, x.shape[1], ph * s, pw * s)
            for y0 in range(0, ph, tile):
                for x0 in range(0, pw, tile):
                    y1, x1 = min(y0 + tile, ph), min(x0 + tile, pw)
                    ty0, tx0 = max(y0 - pad, 0), max(x0 - pad, 0)
                    part = model(x[:, :, ty0 : min(y1 + pad, ph), tx0 : min(x1 + pad, pw)])
                    oy, ox = (y0 - ty0) * s, (x0 - tx0) * s
                    out[:, :, y0 * s : y1 * s, x0 * s : x1 * s] = part[
                        :, :, oy : oy + (y1 - y0) * s, ox : ox + (x1 - x0) * s
                    ]
        return out[:, :, : h * s, : w * s]
