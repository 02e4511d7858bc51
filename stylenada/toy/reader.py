"""The attribute reader: recovers shape, colour, style, background, size and position from pixels.

It is the judge of every shapes-world metric, so it does not use CLIP. A small CNN with one head per
attribute, trained on renders with augmentations that imitate a small GAN's outputs (blur, noise, slight
colour shifts). ``validity`` re-renders what was read and compares it with the image: a sample whose
re-render differs a lot is not a clean shape, whatever the heads say.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StylenadaError
from .render import BACKGROUNDS, COLOURS, SHAPES, STYLES, ShapeAttributes, background_colours, render, render_batch

WEIGHTS = Path(__file__).parent / "weights" / "reader.safetensors"
HEADS = {"shape": SHAPES, "colour": tuple(COLOURS), "style": STYLES, "background": tuple(BACKGROUNDS)}
# Mean absolute difference (in [-1, 1] units) over the object region between an image and the re-render
# of what was read, both blurred (sigma 1.5 px), above which a sample is not a valid shape image.
# Calibrated on fresh renders of the source domain (median 0.041, 99th percentile 0.139, max 0.163 over
# 512 with the shipped reader) and uniform noise (> 0.6): a valid sample is about as exact as a render.
VALID_MAX_ERROR = 0.16
VALID_BLUR_SIGMA = 1.5


def gaussian_blur(x: torch.Tensor, sigma: float, k: int = 5) -> torch.Tensor:
    t = torch.arange(k, dtype=torch.float32) - k // 2
    g = torch.exp(-t.square() / (2 * sigma**2))
    g = g / g.sum()
    w = torch.outer(g, g).expand(x.shape[1], 1, k, k).contiguous()
    return F.conv2d(F.pad(x, (k // 2,) * 4, mode="replicate"), w, groups=x.shape[1])


class ReaderNet(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        w = width

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

        # Coordinates as extra input channels make position and size regression easy.
        self.features = nn.Sequential(block(5, w), nn.MaxPool2d(2), block(w, 2 * w), nn.MaxPool2d(2),
                                      block(2 * w, 4 * w), nn.MaxPool2d(2), block(4 * w, 4 * w))
        self.head = nn.Linear(4 * w * 16, 128)
        self.cls = nn.ModuleDict({k: nn.Linear(128, len(v)) for k, v in HEADS.items()})
        self.reg = nn.Linear(128, 3)  # size, x, y

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        n, _, h, w = images.shape
        if (h, w) != (32, 32):
            images = F.interpolate(images, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
        coords = torch.stack([xs, ys]).to(images).expand(n, 2, 32, 32)
        f = self.features(torch.cat([images, coords], dim=1))
        f = F.relu(self.head(f.flatten(1)))
        out = {k: head(f) for k, head in self.cls.items()}
        out["reg"] = self.reg(f)
        return out


class AttributeReader:
    """Reads ShapeAttributes from [-1, 1] NCHW images (32 or 64 px)."""

    def __init__(self, net: ReaderNet):
        self.net = net.eval()

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for chunk in images.float().clamp(-1, 1).split(256):  # judged as saved
            for k, v in self.net(chunk.cpu()).items():
                out.setdefault(k, []).append(v)
        return {k: torch.cat(v) for k, v in out.items()}

    def read(self, images: torch.Tensor) -> list[ShapeAttributes]:
        p = self.predict(images)
        idx = {k: p[k].argmax(dim=1).tolist() for k in HEADS}
        reg = p["reg"].tolist()
        return [ShapeAttributes(shape=SHAPES[idx["shape"][i]], colour=tuple(COLOURS)[idx["colour"][i]],
                                style=STYLES[idx["style"][i]], size=reg[i][0], x=reg[i][1], y=reg[i][2],
                                background=tuple(BACKGROUNDS)[idx["background"][i]])
                for i in range(len(images))]

    def validity(self, images: torch.Tensor) -> tuple[torch.Tensor, list[ShapeAttributes]]:
        """Per-image re-render error and the attributes read.

        The error is the mean |image - render(read(image))| over the object region (pixels where either
        image departs from the read background colour), so a wrong reading cannot hide behind a large
        matching background; both are blurred first so a sub-pixel offset of a thin outline does not count.
        """
        attrs = self.read(images)
        clipped = [dataclasses.replace(a, size=min(max(a.size, 0.05), 0.95), x=min(max(a.x, -1.0), 1.0),
                                       y=min(max(a.y, -1.0), 1.0)) for a in attrs]
        size = images.shape[-1] if images.shape[-1] in (32, 64) else 32
        imgs = images.float().cpu()
        if imgs.shape[-1] != size:
            imgs = F.interpolate(imgs, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        imgs = gaussian_blur(imgs.clamp(-1, 1), VALID_BLUR_SIGMA)
        again = gaussian_blur(render(clipped, size), VALID_BLUR_SIGMA)
        bg = background_colours(attrs)
        region = ((imgs - bg).abs().amax(dim=1) > 0.2) | ((again - bg).abs().amax(dim=1) > 0.2)  # [N, H, W]
        diff = (imgs - again).abs().mean(dim=1)
        err = (diff * region).sum(dim=[1, 2]) / region.sum(dim=[1, 2]).clamp_min(1)
        return err, attrs


def load_reader(weights: str | Path | None = None) -> AttributeReader:
    from safetensors.torch import load_file

    path = Path(weights) if weights is not None else WEIGHTS
    if not path.exists():
        raise StylenadaError(f"attribute reader weights not found at {path}: train them with "
                             f"`python -m stylenada.toy.reader --out {path}`")
    net = ReaderNet()
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return AttributeReader(net)


# --- training ---------------------------------------------------------------------------------------


@dataclass
class ReaderTrainConfig:
    steps: int = 1500
    batch: int = 96
    lr: float = 2e-3
    seed: int = 0
    threads: int = 0
    texture: float = 0.0  # share of images whose object gets an uneven tint (as adapted generators make)
    init: str = ""  # continue from these weights


def uneven_tint(images: torch.Tensor, attrs: list[ShapeAttributes], rng: torch.Generator, share: float) -> torch.Tensor:
    """Give ``share`` of the objects low-frequency brightness and colour variation (label unchanged).

    Generators adapted by CLIP recolour objects unevenly (gradients, darker patches, off-palette hues);
    the reader must still see the object's shape, style, size and position, and its dominant colour.
    """
    n, _, h, w = images.shape
    chosen = (torch.rand(n, generator=rng) < share).view(n, 1, 1, 1).float()
    if share <= 0 or not chosen.any():
        return images
    obj = ((images - background_colours(attrs)).abs().amax(dim=1, keepdim=True) > 0.1).float()

    def field(channels: int) -> torch.Tensor:
        coarse = torch.randn(n, channels, 4, 4, generator=rng)
        return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)

    brightness = 1 + 0.25 * field(1)
    tint = 0.2 * field(3)
    changed = ((images + 1) * brightness - 1 + tint).clamp(-1, 1)
    return images + chosen * obj * (changed - images)


def augment(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Blur, noise and small colour shifts, the kinds of error a small GAN makes."""
    n = images.shape[0]
    k = torch.tensor([1.0, 2.0, 1.0]) / 4
    blurred = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"),
                       torch.outer(k, k).expand(3, 1, 3, 3).contiguous(), groups=3)
    mix = torch.rand(n, 1, 1, 1, generator=rng)
    out = images + mix * (blurred - images)
    shift = 0.08 * (torch.rand(n, 3, 1, 1, generator=rng) * 2 - 1)
    scale = 1 + 0.08 * (torch.rand(n, 1, 1, 1, generator=rng) * 2 - 1)
    noise = 0.06 * torch.rand(n, 1, 1, 1, generator=rng) * torch.randn(images.shape, generator=rng)
    return (out * scale + shift + noise).clamp(-1, 1)


def reader_loss(out: dict[str, torch.Tensor], attrs: list[ShapeAttributes]) -> torch.Tensor:
    loss = sum(F.cross_entropy(out[k], torch.tensor([v.index(getattr(a, k)) for a in attrs])) for k, v in HEADS.items())
    target = torch.tensor([[a.size, a.x, a.y] for a in attrs])
    return loss + 20 * F.mse_loss(out["reg"], target)


def train_reader(cfg: ReaderTrainConfig, out: str | Path | None = None, progress: bool = True
                 ) -> tuple[AttributeReader, dict]:
    from tqdm import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = torch.Generator().manual_seed(cfg.seed)
    net = ReaderNet().train()
    if cfg.init:
        from safetensors.torch import load_file

        net.load_state_dict({k: v.float() for k, v in load_file(cfg.init).items()})
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    t0 = time.perf_counter()
    for _ in tqdm(range(cfg.steps), desc="train reader", disable=not progress):
        images, attrs = render_batch(cfg.batch, "all", rng)
        loss = reader_loss(net(augment(uneven_tint(images, attrs, rng, cfg.texture), rng)), attrs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    reader = AttributeReader(net.eval())
    metrics = reader_accuracy(reader) | {"train_seconds": time.perf_counter() - t0}
    if out is not None:
        from safetensors.torch import save_file

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out),
                  metadata={"config": json.dumps(dataclasses.asdict(cfg)), "metrics": json.dumps(metrics)})
    return reader, metrics


def reader_accuracy(reader: AttributeReader, n: int = 1000, seed: int = 777, size: int = 32) -> dict[str, float]:
    """Accuracy per categorical attribute and mean absolute error of size and position on fresh renders."""
    images, attrs = render_batch(n, "all", seed, size=size)
    read = reader.read(images)
    out = {k: sum(getattr(a, k) == getattr(b, k) for a, b in zip(attrs, read, strict=True)) / n for k in HEADS}
    for k in ("size", "x", "y"):
        out[f"{k}_mae"] = sum(abs(getattr(a, k) - getattr(b, k)) for a, b in zip(attrs, read, strict=True)) / n
    err, _ = reader.validity(images)
    out["valid"] = float((err < VALID_MAX_ERROR).float().mean())
    return out


def main(argv: list[str] | None = None) -> None:
    from ..utils.scripts import config_parser

    ap = config_parser(ReaderTrainConfig, __doc__)
    ap.add_argument("--out", default=str(WEIGHTS))
    args = vars(ap.parse_args(argv))
    out = args.pop("out")
    _, metrics = train_reader(ReaderTrainConfig(**args), out=out)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
