"""Train an e4e/pSp encoder for any generator (the shapes world's, or your own).

Each step mixes two kinds of images:

- the generator's own samples, whose W+ codes are known: a latent loss ``|E(x) - w|^2`` besides the
  reconstruction loss (pSp's and e4e's papers train on real images only; with synthetic images the code
  is known and speeds training up a lot);
- "real" images from ``sample_real`` (for the shapes world: fresh renders the generator never made),
  with the reconstruction loss only: pixel L2 on ``G(E(x))`` plus, optionally, a CLIP-feature loss.

e4e's regulariser keeps codes editable: ``lambda_delta * sum_i |w_i - w_0|_2`` pulls each W+ entry
toward the base code. An identity loss needs a face-recognition network and is not part of this trainer.

    .venv/bin/python -m stylenada.invert.train_encoder --generator G.safetensors --out enc.pt --real shapes
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.family import Generator
from ..utils.scripts import config_parser, log_record, write_log
from .encoders import Encoder, EncoderConfig, save_encoder


@dataclass
class EncoderTrainConfig:
    kind: str = "e4e"
    depths: tuple[int, int, int, int] = (16, 32, 64, 128)  # IR-SE50 layout with narrow stages
    input_size: int = 32  # images are resized to this before the backbone
    iters: int = 2000
    batch: int = 32
    lr: float = 0.001
    real_fraction: float = 0.5  # share of each batch taken from sample_real (the rest: generator samples)
    lambda_pixel: float = 1.0
    lambda_latent: float = 1.0  # on generator samples only
    lambda_delta: float = 0.0002  # e4e's delta regulariser
    truncation: float = 1.0
    seed: int = 0
    threads: int = 0
    log_every: int = 100


def delta_regularizer(ws: torch.Tensor) -> torch.Tensor:
    """e4e's L_d-reg: sum over W+ entries of the L2 norm of their offset from the first (base) code."""
    return (ws[:, 1:] - ws[:, :1]).norm(dim=-1).sum(dim=1).mean()


def train_encoder(G: Generator, cfg: EncoderTrainConfig,
                  sample_real: Callable[[int, torch.Generator], torch.Tensor] | None = None,
                  out: str | Path | None = None, progress: bool = True) -> tuple[Encoder, list[dict]]:
    """Train an encoder into ``G``'s W+ space; returns it (eval mode) and the log. ``G`` stays frozen."""
    from tqdm import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = torch.Generator().manual_seed(cfg.seed)
    G = G.eval().requires_grad_(False)
    E = Encoder(EncoderConfig(kind=cfg.kind, num_styles=G.num_ws, style_dim=G.w_dim, depths=cfg.depths,
                              input_size=cfg.input_size))
    with torch.no_grad():
        E.latent_avg.copy_(G.w_avg.expand(G.num_ws, -1))
    E.train()
    opt = torch.optim.Adam(E.encoder.parameters(), lr=cfg.lr)
    n_real = round(cfg.batch * cfg.real_fraction) if sample_real is not None else 0
    n_fake = cfg.batch - n_real
    log: list[dict] = []
    t0 = time.perf_counter()
    for it in tqdm(range(cfg.iters), desc="train encoder", disable=not progress):
        lr = cfg.lr * min(1.0, 2 * (1 - it / cfg.iters))  # constant, then linear decay over the last half
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            z = torch.randn(n_fake, G.z_dim, generator=rng)
            ws_true = G.mapping(z, truncation_psi=cfg.truncation)
            fake = G.synthesis(ws_true, noise_mode="const")
        images = torch.cat([fake, sample_real(n_real, rng)]) if n_real else fake
        ws = E(images)
        recon = G.synthesis(ws, noise_mode="const")
        pixel = F.mse_loss(recon, images)
        latent = F.mse_loss(ws[:n_fake], ws_true) if n_fake else torch.zeros(())
        delta = delta_regularizer(ws) if cfg.kind == "e4e" else torch.zeros(())
        loss = cfg.lambda_pixel * pixel + cfg.lambda_latent * latent + cfg.lambda_delta * delta
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if it % cfg.log_every == 0 or it == cfg.iters - 1:
            rec = {"iter": it, "pixel": pixel.item(), "latent": latent.item(), "delta": delta.item(),
                   "seconds": time.perf_counter() - t0}
            log_record(log, rec, progress)
    E.eval()
    if out is not None:
        save_encoder(E, out)
        write_log(out, cfg, log)
    return E, log


# Sources of real images for encoder training: name -> fn(resolution) -> sample(n, rng) -> [n, 3, R, R].
REAL_IMAGE_SOURCES: dict[str, Callable] = {}


def main(argv: list[str] | None = None) -> None:
    from ..formats import load_generator

    ap = config_parser(EncoderTrainConfig, __doc__)
    ap.add_argument("--generator", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--real", default=None, help="real images beside the generator's: a source registered by a "
                    "plugin (e.g. 'shapes': fresh renders of the shapes world's source domain)")
    args = vars(ap.parse_args(argv))
    G = load_generator(args.pop("generator"))
    out, real = args.pop("out"), args.pop("real")
    args["depths"] = tuple(args["depths"])  # argparse gives a list
    sample_real = None
    if real is not None:
        from ..plugins import load_plugins

        load_plugins()
        if real not in REAL_IMAGE_SOURCES:
            raise SystemExit(f"error: unknown --real {real!r}; registered: {', '.join(REAL_IMAGE_SOURCES) or 'none'}")
        sample_real = REAL_IMAGE_SOURCES[real](G.resolution)
    train_encoder(G, EncoderTrainConfig(**args), sample_real=sample_real, out=out)


if __name__ == "__main__":
    main()
