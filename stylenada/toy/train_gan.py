"""Train the shapes world's tiny StyleGAN2 (or StyleGAN3, ``--family stylegan3``) with the project's own networks.

StyleGAN2's recipe at small scale: non-saturating logistic loss, lazy R1 regularisation of D, an
exponential moving average of G's weights (``G_ema``, the one that is shipped), Adam with betas
(0, 0.99) and the lazy-regularisation learning-rate correction, and the tracked mean w for truncation.
Training images come from the procedural renderer (``stylenada.toy.render``) of a chosen domain.

Because that renderer is known, G can also be given a renderer-distillation term (``--distill``): each
latent stands for the render of attributes read off its first coordinates (``distill_targets``), and G's
loss adds the squared error to it. ``--distill-warmup N`` trains on that term alone for the first N
iterations (a supervised start, no D), after which D, the non-saturating loss, R1 and EMA train as
usual with the term beside them. On a 2-core CPU this reaches in minutes what the pure GAN (``--distill
0``) did not reach in 100 CPU minutes. The shipped generator's commands are in
``stylenada/toy/weights/README.md``.

    .venv/bin/python -m stylenada.toy.train_gan --iters 6000 --out /tmp/shapes_gan.safetensors
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import StylenadaError
from ..formats import save_generator
from ..models import (
    Discriminator,
    DiscriminatorConfig,
    Generator,
    GeneratorConfig,
    mix_styles,
    normalize_2nd_moment,
)
from ..models.family import family_for_config
from ..utils.scripts import config_parser, log_record, write_log
from .render import ATTRIBUTE_COORDINATES, DOMAINS, Domain, attributes_from_uniform, domain_sampler, render


@dataclass
class GanTrainConfig:
    family: str = "stylegan2"  # or 'stylegan3' (config T; --sg3-config R) with --num-layers synthesis layers
    sg3_config: str = "T"
    num_layers: int = 6  # StyleGAN3 only: synthesis layers between the Fourier input and the ToRGB
    margin_size: int = 4  # StyleGAN3 only: pixels computed outside the image on each side (NVIDIA: 10)
    resolution: int = 32
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    mapping_lr_mul: float = 0.01  # StyleGAN2's default: the mapping network learns 100x slower
    channel_base: int = 1024  # channels: min(1024 / res, channel_max) = 64, 64, 64, 32
    channel_max: int = 64
    d_channel_base: int = 1024
    d_channel_max: int = 64
    iters: int = 6000
    batch: int = 32
    lr: float = 0.0025
    r1_gamma: float = 0.05
    r1_every: int = 16
    ema_kimg: float = 2.5  # half-life of the weight average, in thousands of images
    ema_rampup: float = 0.05
    mixing: float = 0.9
    seed: int = 0
    domain: str = "source"  # a domain name known to stylenada.toy.render
    threads: int = 0  # torch threads (0: leave as is)
    device: str = "cpu"  # 'cuda' trains a larger generator in minutes where a GPU is available
    log_every: int = 100
    sample_every: int = 0  # write a grid of G_ema samples to sample_dir every this many iterations
    sample_dir: str = ""
    select_best: bool = False  # at each sample, score G_ema with the attribute reader; OUT keeps the best
    distill: float = 0.0  # weight of the renderer-distillation term in G's loss (0: a pure GAN; see distill_targets)
    distill_warmup: int = 0  # the first iterations train G on the distillation term alone (no D, no GAN loss)


def _requires_grad(m: torch.nn.Module, flag: bool) -> None:
    for p in m.parameters():
        p.requires_grad_(flag)


def _state_path(out: str | Path) -> Path:
    return Path(str(out) + ".state.pt")


def sample_validity(G: Generator, n: int = 256, seed: int = 0) -> float:
    """Share of ``n`` samples (fixed latents, no truncation) that the attribute reader recognises."""
    from .reader import VALID_MAX_ERROR, load_reader
    from .tasks import sample_images

    err, _ = load_reader().validity(sample_images(G, n, seed))
    return float((err < VALID_MAX_ERROR).float().mean())


def distill_targets(z: torch.Tensor, domain: Domain, resolution: int) -> torch.Tensor:
    """The render each latent stands for: attributes from the first coordinates of z by inverse CDF.

    z is normalised as the mapping network normalises it, so the target is a function of what G sees;
    for z ~ N(0, I) the attributes follow ``domain``'s distribution, so a generator that reproduces its
    targets samples exactly the training distribution. Used as an extra term in G's loss beside the
    adversarial one (D, R1 and EMA train as usual).
    """
    u = torch.special.ndtr(normalize_2nd_moment(z.float().cpu())[:, :ATTRIBUTE_COORDINATES])
    return render(attributes_from_uniform(u, domain), resolution)


def generator_config(cfg: GanTrainConfig):
    """The generator's config: StyleGAN2 with the given channels, or StyleGAN3 config T / R."""
    common = dict(resolution=cfg.resolution, z_dim=cfg.z_dim, w_dim=cfg.w_dim, mapping_layers=cfg.mapping_layers,
                  mapping_lr_mul=cfg.mapping_lr_mul, channel_base=cfg.channel_base, channel_max=cfg.channel_max)
    if cfg.family == "stylegan2":
        return GeneratorConfig(**common)
    if cfg.family == "stylegan3":
        from ..models.stylegan3 import StyleGAN3Config

        r = dict(conv_kernel=1, use_radial_filters=True) if cfg.sg3_config.upper() == "R" else {}
        return StyleGAN3Config(**common, num_layers=cfg.num_layers, margin_size=cfg.margin_size, **r)
    raise StylenadaError(f"unknown generator family {cfg.family!r}: stylegan2 or stylegan3")


def train_gan(cfg: GanTrainConfig, sample_real: Callable[[int, torch.Generator], torch.Tensor] | None = None,
              out: str | Path | None = None, progress: bool = True,
              resume: bool = False) -> tuple[Generator, list[dict]]:
    """Train G and D; returns ``G_ema`` and the log. ``sample_real(n, rng)`` gives [n, 3, R, R] in [-1, 1].

    With ``out``, the full training state (G, D, G_ema, optimisers, RNG) is written beside it at every
    sample, and ``resume=True`` continues from that state.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = torch.Generator().manual_seed(cfg.seed)
    if cfg.domain not in DOMAINS:
        raise StylenadaError(f"unknown domain {cfg.domain!r}: choose one of {', '.join(DOMAINS)}")
    if sample_real is None:
        sample_real = domain_sampler(cfg.domain, cfg.resolution)
    gcfg = generator_config(cfg)
    dcfg = DiscriminatorConfig(resolution=cfg.resolution, channel_base=cfg.d_channel_base,
                               channel_max=cfg.d_channel_max)
    domain = DOMAINS[cfg.domain]
    device = torch.device(cfg.device)
    if cfg.distill_warmup and not cfg.distill:
        raise StylenadaError("--distill-warmup trains on the distillation term alone: give --distill > 0 too")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StylenadaError("--device cuda, but no CUDA GPU is visible: train on --device cpu or on a GPU machine")
    G, D = family_for_config(gcfg).build(gcfg).to(device), Discriminator(dcfg).to(device)
    sg3 = G.family == "stylegan3"
    G_ema = copy.deepcopy(G).eval()
    _requires_grad(G_ema, False)
    # Lazy regularisation: D is regularised every r1_every steps, so its Adam settings are corrected.
    c = cfg.r1_every / (cfg.r1_every + 1)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr * c, betas=(0.0, 0.99**c))
    log: list[dict] = []
    start = 0
    if resume:
        if not _state_path(out).exists():
            raise StylenadaError(f"no training state to resume at {_state_path(out)}: run without --resume first")
        st = torch.load(_state_path(out), map_location=device, weights_only=True)
        for m, k in ((G, "G"), (D, "D"), (G_ema, "G_ema"), (opt_g, "opt_g"), (opt_d, "opt_d")):
            m.load_state_dict(st[k])
        for group in opt_g.param_groups:  # the command line's learning rate wins over the saved one
            group["lr"] = cfg.lr
        for group in opt_d.param_groups:
            group["lr"] = cfg.lr * c
        rng.set_state(st["rng"].cpu())
        torch.set_rng_state(st["torch_rng"].cpu())
        start, log = st["iter"], json.loads(st["log"])
    # During the warm-up G draws through its last ToRGB only (the others zero and frozen), as a StyleGAN2
    # trained adversarially ends up doing; regressing the renders otherwise paints the objects' colour in
    # the 4 and 8 px ToRGBs, a blur that later adaptation can only recolour as a haze.
    # (StyleGAN3 has one ToRGB only.)
    coarse_rgb = [] if sg3 else [p for b in G.synthesis.blocks()[:-1] for p in b.torgb.parameters()]
    if start < cfg.distill_warmup and not sg3:
        with torch.no_grad():
            for m in (G, G_ema):
                for b in m.synthesis.blocks()[:-1]:
                    b.torgb.weight.zero_()
                    b.torgb.bias.zero_()
    t0 = time.perf_counter()

    def sample_ws(n: int, mixing: float) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """z, its W+ codes (style-mixed with probability ``mixing``) and whether they were mixed."""
        z = torch.randn(n, gcfg.z_dim, generator=rng).to(device)
        ws = G.mapping(z, update_w_avg=True)
        mixed = bool(torch.rand((), generator=rng) < mixing)
        if mixed:
            cutoff = int(torch.randint(1, G.num_ws, (), generator=rng))
            ws = mix_styles(ws, G.mapping(torch.randn(n, gcfg.z_dim, generator=rng).to(device)), cutoff)
        return z, ws, mixed

    from tqdm import tqdm

    best = {"valid": float(st["best_valid"]) if resume and "best_valid" in st else -1.0}
    saved = {"iter": start if resume else -1}

    def save_state(it: int) -> None:
        from ..utils.io import atomic_write

        snapshot = copy.deepcopy(G_ema).cpu()
        if cfg.select_best:  # model selection by the known-answer metric, as StyleGAN selects by FID
            valid = sample_validity(snapshot)
            log_record(log, {"iter": it, "valid": valid}, progress)
            if valid >= best["valid"]:
                best["valid"] = valid
                save_generator(snapshot, out)
        else:
            save_generator(snapshot, out)
        st = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(), "opt_g": opt_g.state_dict(),
              "opt_d": opt_d.state_dict(), "rng": rng.get_state(), "torch_rng": torch.get_rng_state(),
              "iter": it, "log": json.dumps(log), "best_valid": best["valid"]}
        atomic_write(_state_path(out), lambda p: torch.save(st, p))
        saved["iter"] = it

    for it in tqdm(range(start, cfg.iters), desc="train tiny GAN", disable=not progress,
                   initial=start, total=cfg.iters):
        adversarial = it >= cfg.distill_warmup
        d_loss = r1 = g_loss = torch.zeros((), device=device)
        # --- D: logistic loss on real vs fake, lazy R1 on real.
        if adversarial:
            _requires_grad(G, False)
            _requires_grad(D, True)
            real = sample_real(cfg.batch, rng).to(device)
            with torch.no_grad():  # StyleGAN3 tracks its layers' input magnitudes here, as NVIDIA's loss does
                fake = G.synthesis(sample_ws(cfg.batch, cfg.mixing)[1], noise_mode="random",
                                   **({"update_emas": True} if sg3 else {}))
            d_loss = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            if it % cfg.r1_every == 0:
                real_r = real.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(D(real_r).sum(), [real_r], create_graph=True)
                r1 = grad.square().sum(dim=[1, 2, 3]).mean()
                (r1 * (cfg.r1_gamma / 2) * cfg.r1_every).backward()
            opt_d.step()

        # --- G: non-saturating loss (and the distillation term).
        _requires_grad(G, True)
        _requires_grad(D, False)
        if not adversarial:
            for p in coarse_rgb:
                p.requires_grad_(False)
        z, ws, mixed = sample_ws(cfg.batch, cfg.mixing if adversarial else 0.0)
        fake = G.synthesis(ws, noise_mode="random")
        if adversarial:
            g_loss = F.softplus(-D(fake)).mean()
        distill = torch.zeros((), device=device)
        if cfg.distill and not mixed:  # a mixed code stands for no single render
            distill = (fake - distill_targets(z, domain, cfg.resolution).to(device)).square().mean()
        opt_g.zero_grad(set_to_none=True)
        (g_loss + cfg.distill * distill).backward()
        opt_g.step()

        # --- EMA of G's weights (with StyleGAN2-ADA's ramp-up of the half-life).
        with torch.no_grad():
            kimg = (it + 1) * cfg.batch / 1000
            half_life = min(cfg.ema_kimg, kimg * cfg.ema_rampup) if cfg.ema_rampup else cfg.ema_kimg
            beta = 0.5 ** (cfg.batch / max(half_life * 1000, 1e-8))
            for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(b)

        if it % cfg.log_every == 0 or it == cfg.iters - 1:
            rec = {"iter": it, "d_loss": d_loss.item(), "g_loss": g_loss.item(), "r1": r1.item(),
                   **({"distill": distill.item()} if cfg.distill else {}),
                   "seconds": time.perf_counter() - t0}
            log_record(log, rec, progress)
        if cfg.sample_every and cfg.sample_dir and (it + 1) % cfg.sample_every == 0:
            from ..utils.images import save_grid

            with torch.no_grad():
                z = torch.randn(32, gcfg.z_dim, generator=torch.Generator().manual_seed(123)).to(device)
                save_grid(G_ema(z, noise_mode="const"), Path(cfg.sample_dir) / f"iter{it + 1:06d}.png", ncols=8)
            if out is not None:  # a usable snapshot and the state at every sample: stop early or resume
                save_state(it + 1)
    if out is not None:
        if saved["iter"] != cfg.iters:
            save_state(cfg.iters)  # so that a longer run can continue from here
        write_log(out, cfg, log)
    return G_ema.cpu(), log


def main(argv: list[str] | None = None) -> None:
    ap = config_parser(GanTrainConfig, __doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--resume", action="store_true", help="continue from OUT.state.pt")
    args = vars(ap.parse_args(argv))
    out, resume = args.pop("out"), args.pop("resume")
    try:
        train_gan(GanTrainConfig(**args), out=out, resume=resume)
    except StylenadaError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
