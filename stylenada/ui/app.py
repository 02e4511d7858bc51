"""``stylenada ui``: a Gradio app to adapt a generator, edit photos with the result and explore runs.

Three tabs over the library (nothing here trains or renders by itself):

- Adapt: the options of ``stylenada train``; Start / Stop / Resume a run in the background
  (:class:`~stylenada.ui.worker.TrainingWorker`); a live sample grid, loss curves and progress; downloads
  of the adapted generator (native and rosinality ``.pt``) and the run's report.
- Edit: a photo -> aligned crop -> inversion (encoder or optimisation) -> each adapted generator.
- Explore: any run folder: seeds, truncation, a latent-walk slider and a video.
"""

from __future__ import annotations

import functools
import html
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..adapt.config import PRESETS, TrainConfig, choices, preset
from ..errors import StylenadaError
from ..utils.rundir import RunDir, free_run_dir
from .worker import RunStatus, TrainingWorker

ALIGN_CHOICES = {"face (dlib alignment)": True, "already aligned (centre crop)": False}
INVERT_CHOICES = ("optimisation", "encoder (pSp/e4e)")
REFRESH_SECONDS = 1.0
CSS = """#sample-grid img, #explore-grid img, #walk-image img, #edit-gallery img {image-rendering: pixelated;}
#sample-grid img, #explore-grid img, #walk-image img {width: 100%; height: 100%; object-fit: contain;}"""


@dataclass
class UISettings:
    """What the page starts with: a base config (a generator and the settings that suit it) and where runs go."""

    base: TrainConfig
    runs: Path = Path("runs/ui")
    device: str = "auto"
    edit_align: bool = True  # faces by default; False for generators of aligned or non-face images
    edit_steps: int = 300
    extra_runs: list[Path] = field(default_factory=list)  # further folders whose runs Explore and Edit list

    @classmethod
    def create(cls, generator: str | None = None, clip: list[str] | None = None, runs: str | Path = "runs/ui",
               device: str = "auto") -> UISettings:
        """Settings for ``generator`` (any checkpoint); without one, the first registered preset (the shapes
        world)."""
        if generator is None:
            if not PRESETS:
                raise StylenadaError("no generator given and no preset registered: pass a generator checkpoint")
            base, align = preset(next(iter(PRESETS))), False
        else:
            if not Path(generator).is_file():
                raise StylenadaError(f"generator not found: {generator} (pass a checkpoint file)")
            base, align = TrainConfig(generator=str(Path(generator).resolve())), True
        if clip:
            base.clip = list(clip)
        base.device = device
        return cls(base=base, runs=Path(runs), device=device, edit_align=align)


# --- pure helpers (tested without a browser) ------------------------------------------------------------


def find_runs(*roots: Path) -> list[str]:
    """Run folders (those with a config.json) directly under each root, newest first."""
    found = [p for root in roots if root.is_dir() for p in root.iterdir() if RunDir.is_run(p)]
    return [str(p) for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def newest_sample(run_dir: Path | None) -> Path | None:
    """The run's newest sample grid: samples/final.png, else the highest step."""
    if run_dir is None:
        return None
    run = RunDir(run_dir)
    if run.sample("final").is_file():
        return run.sample("final")
    steps = sorted(run.samples.glob("step*.png")) if run.samples.is_dir() else []
    return steps[-1] if steps else None


def loss_table(records: list[dict], terms: tuple[str, ...] = ()):
    """Loss terms per step in long form (step, value, term), for the live plot. ``terms`` get a row without
    a value at step 0: the plot takes its series (colours, legend) from the first table it is given."""
    import pandas as pd

    rows = [(0, float("nan"), term) for term in terms]
    rows += [(r["step"], v, k[len("loss/"):]) for r in records for k, v in r.items()
             if k.startswith("loss/") and isinstance(v, float)]
    table = pd.DataFrame(rows, columns=["step", "value", "term"])
    return table.astype({"term": object})  # text as categories (pandas' own text dtype plots as one series)


def progress_html(status: RunStatus) -> str:
    share = status.step / status.iters if status.iters else 0.0
    return (f'<div id="train-progress-box"><progress id="train-progress" value="{status.step}" '
            f'max="{max(status.iters, 1)}" style="width:100%"></progress> {share:.0%}</div>')


def status_markdown(status: RunStatus) -> str:
    if status.run_dir is None:
        return "No run yet: set the options and press **Start**."
    text = f"**{status.state}** · `{status.run_dir}` · step {status.step} / {status.iters}"
    return text + (f"\n\n{status.message}" if status.message else "")


def walk_point(ws: torch.Tensor, t: float) -> torch.Tensor:
    """The point at ``t`` in [0, 1] on the path through the keyframes ``ws`` [K, num_ws, w_dim] (piecewise
    linear in W, evenly timed): [1, num_ws, w_dim]."""
    if len(ws) == 1:
        return ws[:1]
    x = min(max(t, 0.0), 1.0) * (len(ws) - 1)
    i = min(int(x), len(ws) - 2)
    return torch.lerp(ws[i : i + 1], ws[i + 1 : i + 2], x - i)


def error_markdown(e: Exception) -> str:
    return f"**Error:** {html.escape(str(e))}"


# --- generators, cached by file and modification time ----------------------------------------------------


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float, device: str):
    from ..formats import load_generator

    return load_generator(path, device=device).eval()


def load_cached(path: str | Path, device: str = "cpu"):
    path = Path(path).resolve()
    if not path.is_file():
        raise StylenadaError(f"generator not found: {path}")
    return _load(str(path), path.stat().st_mtime, device)


def run_generators(run_dir: str | Path, device: str = "cpu"):
    """(frozen source, adapted) generators of a run folder (the adapted one from its newest checkpoint when
    the run has not finished)."""
    run = RunDir.open(run_dir)
    return load_cached(run.source_generator(), device), load_cached(adapted_generator_path(run.path), device)


def adapted_generator_path(item: str | Path) -> Path:
    """A run folder stands for its adapted generator; anything else is a checkpoint path."""
    if RunDir.is_run(item):
        adapted = RunDir(item).adapted_generator()
        if adapted is None:
            raise StylenadaError(f"{item} has no generator yet: let it train at least one step")
        return adapted
    return Path(item)


# --- the actions ----------------------------------------------------------------------------------------


def train_config(settings: UISettings, generator: str, clip: str, source: str, target: str,
                 target_files: list | None, layers: str, weighting: str, k: float | None, iters: float,
                 lr: float, out: str) -> TrainConfig:
    """The run the Adapt tab describes: the base settings with the page's values."""
    if not out.strip():
        raise StylenadaError("no run folder given: name one (e.g. runs/ui/blue)")
    if iters is None or iters < 1 or iters != int(iters):
        raise StylenadaError(f"steps must be a whole number >= 1, got {iters}")
    if k is not None and (k < 1 or k != int(k)):
        raise StylenadaError(f"k must be a whole number >= 1 (W+ entries), got {k}")
    iters = int(iters)
    specs = [s.strip() for s in clip.split(",") if s.strip()]
    cfg = replace(settings.base, generator=generator.strip(), clip=specs or settings.base.clip, source=source,
                  target=target, layers=layers, weighting=weighting, iters=iters, lr=float(lr), out=out.strip(),
                  target_images=None, sample_every=max(1, min(10, iters // 10)),
                  checkpoint_every=max(1, min(settings.base.checkpoint_every or 100, iters // 4)),
                  selection=replace(settings.base.selection, k=int(k) if k else None))
    if target_files:
        folder = Path(cfg.out) / "target_images"
        if RunDir.is_run(cfg.out):
            raise StylenadaError(f"{cfg.out} already holds a run: press Resume to continue it, or choose another "
                                 "run folder")
        folder.mkdir(parents=True, exist_ok=True)
        for f in target_files:
            shutil.copy(f, folder / Path(f).name)
        cfg.target_images, cfg.target = str(folder), ""
    return cfg


def export_run(run_dir: str | Path, device: str = "cpu") -> tuple[Path, Path | None, Path]:
    """The run's adapted generator (native), the same in rosinality ``.pt`` (None for a family that format
    cannot hold, e.g. StyleGAN3) and its report, for download."""
    from ..formats import load_generator, save_generator
    from ..viz.report import write_report

    run = RunDir.open(run_dir)
    native = adapted_generator_path(run.path)
    G = load_generator(native)
    pt = save_generator(G, run.generator_pt) if G.family == "stylegan2" else None
    report = write_report(run.path, device=device)
    return native, pt, report


def edit_photo(photo: str | None, align: bool, inversion: str, encoder: str, steps: float, source: str,
               adapted: list[str], device: str = "cpu") -> list[tuple]:
    """[(image, caption)]: the aligned photo, its reconstruction and each adapted generator's rendering."""
    from ..invert.align import AlignConfig, read_image
    from ..invert.edit import edit_images, prepare_image
    from ..utils.images import to_uint8

    if not photo:
        raise StylenadaError("no photo: upload a PNG or JPEG first")
    if not adapted:
        raise StylenadaError("no adapted generator chosen: pick at least one run folder or checkpoint")
    if inversion != INVERT_CHOICES[0] and not encoder.strip():
        raise StylenadaError("encoder inversion needs a pSp/e4e checkpoint: give its path, or choose optimisation")
    image = read_image(photo)
    G_source = load_cached(source, device)
    paths = [adapted_generator_path(a) for a in adapted]
    generators = [G_source, *[load_cached(p, device) for p in paths]]
    x = prepare_image(image, G_source.resolution, AlignConfig() if align else None)
    inverter = "optimize" if inversion == INVERT_CHOICES[0] else encoder.strip()
    opt_steps = int(steps) if inversion == INVERT_CHOICES[0] else None
    rows, inv = edit_images(x, generators, inverter, steps=opt_steps)
    labels = ["aligned input", "reconstruction", *[Path(a).name for a in adapted]]
    return [(to_uint8(img[None])[0], label) for img, label in zip(rows[0], labels, strict=True)]


def explore_images(run_dir: str, seeds: str, truncation: float, t: float, device: str = "cpu"):
    """(grid of the seeds: frozen top, adapted bottom; the walk's point ``t``: frozen | adapted)."""
    from ..utils.images import make_grid, to_uint8
    from ..utils.seeds import parse_seeds, z_from_seeds

    if not run_dir:
        raise StylenadaError("no run folder chosen")
    G_frozen, G_adapted = run_generators(run_dir, device)
    seed_list = parse_seeds(seeds)
    if not 1 <= len(seed_list) <= 64:
        raise StylenadaError(f"give 1 to 64 seeds, got {len(seed_list)}")
    with torch.no_grad():
        z = z_from_seeds(seed_list, G_frozen.z_dim).to(G_frozen.w_avg.device)
        ws = G_frozen.mapping(z, truncation_psi=truncation)
        a = G_frozen.synthesis(ws, noise_mode="const")
        b = G_adapted.synthesis(ws, noise_mode="const")
        w = walk_point(ws, t)
        walk = torch.cat([G_frozen.synthesis(w, noise_mode="const"), G_adapted.synthesis(w, noise_mode="const")])
    grid = make_grid(torch.cat([a, b]).cpu(), ncols=len(seed_list))
    return to_uint8(grid[None])[0], to_uint8(make_grid(walk.cpu(), ncols=2)[None])[0]


def explore_video(run_dir: str, seeds: str, truncation: float, out_dir: Path, device: str = "cpu") -> Path:
    from ..utils.seeds import parse_seeds
    from ..viz.video import latent_walk_video

    G_frozen, G_adapted = run_generators(run_dir, device)
    out = out_dir / f"walk-{Path(run_dir).name}-{int(time.time())}.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    latent_walk_video(G_frozen, [G_adapted], out, n_keyframes=max(2, min(len(parse_seeds(seeds)), 8)),
                      frames_per_transition=12, seed=parse_seeds(seeds)[0], truncation=truncation, fps=24)
    return out


# --- the page -------------------------------------------------------------------------------------------


def build_app(settings: UISettings, worker: TrainingWorker | None = None):
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    worker = worker or TrainingWorker()
    base = settings.base
    options = choices()
    runs_root = settings.runs
    render_device = "cpu"
    plot_terms = ("clip", "l2", *[t for t in base.loss_weights() if t not in ("clip", "l2")], "total")

    def listed_runs() -> list[str]:
        return find_runs(runs_root, *settings.extra_runs)

    def guarded(fn):
        """Run ``fn``; a StylenadaError becomes the message shown on the page (first output)."""
        @functools.wraps(fn)
        def wrapper(*args):
            try:
                return fn(*args)
            except StylenadaError as e:
                return error_markdown(e)
        return wrapper

    with gr.Blocks(title="stylenada") as app:
        gr.Markdown("# stylenada\nAdapt a StyleGAN2 generator to a domain described by text, with CLIP as the "
                    "teacher; edit photos with the result.")
        with gr.Tab("Adapt", id="adapt"):
            with gr.Row():
                with gr.Column(scale=1):
                    generator = gr.Textbox(label="Generator", value=base.generator,
                                           info="checkpoint: .safetensors, rosinality .pt or NVIDIA .pkl")
                    clip = gr.Textbox(label="CLIP model(s)", value=", ".join(base.clip),
                                      info="open_clip 'name:pretrained', comma-separated for an ensemble")
                    source = gr.Textbox(label="Source text", value=base.source)
                    target = gr.Textbox(label="Target text", value=base.target, elem_id="target-text")
                    target_files = gr.File(label="Target images (instead of a target text)", file_count="multiple",
                                           file_types=["image"], type="filepath")
                    with gr.Row():
                        layers = gr.Dropdown(list(options["layers"]), value=base.layers, label="Layer strategy")
                        weighting = gr.Dropdown(list(options["weighting"]), value=base.weighting, label="Weighting")
                    with gr.Row():
                        k = gr.Number(value=base.selection.k, label="k (W+ entries)", precision=0)
                        iters = gr.Number(value=base.iters, label="Steps", precision=0, elem_id="steps")
                        lr = gr.Number(value=base.lr, label="Learning rate")
                    out = gr.Textbox(label="Run folder", value=str(free_run_dir(runs_root / "run")),
                                     elem_id="run-folder")
                    with gr.Row():
                        start_btn = gr.Button("Start", variant="primary", elem_id="start")
                        stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                        resume_btn = gr.Button("Resume", elem_id="resume")
                    message = gr.Markdown(elem_id="adapt-message")
                with gr.Column(scale=2):
                    status = gr.Markdown(status_markdown(worker.status()), elem_id="run-status")
                    progress = gr.HTML(progress_html(worker.status()))
                    grid = gr.Image(label="Samples: frozen (top row), adapted (bottom row)", type="filepath",
                                    interactive=False, elem_id="sample-grid", height=220)
                    curves = gr.LinePlot(loss_table([], plot_terms), x="step", y="value", color="term",
                                         label="Loss terms",
                                         elem_id="loss-curves", height=240)
                    export_btn = gr.Button("Export generator and report", elem_id="export")
                    with gr.Row():
                        native_file = gr.File(label="Adapted generator (.safetensors)", elem_id="download-native")
                        pt_file = gr.File(label="rosinality .pt", elem_id="download-pt")
                        report_file = gr.File(label="Report (.html)", elem_id="download-report")
            shown = gr.State((None, -1))

            @guarded
            def start(gen, clip_, src, tgt, files, lay, wgt, k_, n, lr_, out_):
                cfg = train_config(settings, gen, clip_, src, tgt, files, lay, wgt, k_, n, lr_, out_)
                return f"started {worker.start(cfg)}"

            @guarded
            def resume(out_, n):
                return f"resumed {worker.resume(out_, iters=int(n) if n else None)}"

            def stop():
                return "stopping after this step" if worker.stop() else "no run is in progress"

            def refresh(last):
                st = worker.status()
                sample = newest_sample(st.run_dir)
                key = (str(sample) if sample else None, st.step)
                if key == last:
                    return status_markdown(st), progress_html(st), gr.skip(), gr.skip(), last
                records = RunDir(st.run_dir).records() if st.run_dir else []
                image = str(sample) if sample else None
                return status_markdown(st), progress_html(st), image, loss_table(records, plot_terms), key

            @guarded
            def export(out_):
                run = out_.strip() or (str(worker.status().run_dir) if worker.status().run_dir else "")
                if not run:
                    raise StylenadaError("no run to export: start one, or name a run folder")
                native, pt, report = export_run(run, render_device)
                names = ", ".join(p.name for p in (native, pt) if p is not None)
                note = "" if pt else " (rosinality .pt holds StyleGAN2 only)"
                return (f"exported {names} and {report.name}{note}", str(native), str(pt) if pt else None,
                        str(report))

            start_btn.click(start, [generator, clip, source, target, target_files, layers, weighting, k, iters, lr,
                                    out], message)
            stop_btn.click(stop, None, message)
            resume_btn.click(resume, [out, iters], message)
            export_btn.click(lambda o: _pad(export(o), 4), out, [message, native_file, pt_file, report_file])
            timer = gr.Timer(REFRESH_SECONDS)
            timer.tick(refresh, shown, [status, progress, grid, curves, shown], show_progress="hidden")

        with gr.Tab("Edit", id="edit") as edit_tab:
            with gr.Row():
                with gr.Column(scale=1):
                    photo = gr.File(label="Photo (PNG or JPEG)", type="filepath", elem_id="edit-photo")
                    align = gr.Radio(list(ALIGN_CHOICES), label="Alignment", elem_id="edit-align",
                                     value=next(k for k, v in ALIGN_CHOICES.items() if v == settings.edit_align))
                    inversion = gr.Radio(list(INVERT_CHOICES), value=INVERT_CHOICES[0], label="Inversion")
                    encoder = gr.Textbox(label="Encoder checkpoint (for encoder inversion)", value="")
                    steps = gr.Number(value=settings.edit_steps, precision=0, label="Optimisation steps",
                                      elem_id="edit-steps")
                    edit_source = gr.Textbox(label="Source generator", value=base.generator)
                    adapted = gr.Dropdown(listed_runs(), multiselect=True, allow_custom_value=True,
                                          label="Adapted generators (run folders or checkpoints)",
                                          elem_id="edit-adapted")
                    edit_btn = gr.Button("Edit", variant="primary", elem_id="edit-run")
                with gr.Column(scale=2):
                    edit_message = gr.Markdown(elem_id="edit-message")
                    gallery = gr.Gallery(label="Aligned input, reconstruction, each domain", columns=4,
                                         elem_id="edit-gallery", height=320)

            def do_edit(photo_, align_, inversion_, encoder_, steps_, source_, adapted_):
                try:
                    images = edit_photo(photo_, ALIGN_CHOICES[align_], inversion_, encoder_, steps_, source_,
                                        adapted_ or [], render_device)
                except StylenadaError as e:
                    return error_markdown(e), []
                return f"edited with {len(images) - 2} generator(s)", images

            edit_btn.click(do_edit, [photo, align, inversion, encoder, steps, edit_source, adapted],
                           [edit_message, gallery])

        with gr.Tab("Explore", id="explore") as explore_tab:
            with gr.Row():
                with gr.Column(scale=1):
                    explore_run = gr.Dropdown(listed_runs(), allow_custom_value=True, label="Run folder",
                                              elem_id="explore-run")
                    seeds = gr.Textbox(value="0-7", label="Seeds")
                    truncation = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Truncation")
                    walk = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Latent walk (first seed to last)",
                                     elem_id="walk")
                    with gr.Row():
                        show_btn = gr.Button("Show", variant="primary", elem_id="explore-show")
                        video_btn = gr.Button("Video", elem_id="explore-video")
                        refresh_btn = gr.Button("Refresh run list")
                with gr.Column(scale=2):
                    explore_message = gr.Markdown(elem_id="explore-message")
                    explore_grid = gr.Image(label="Seeds: frozen (top row), adapted (bottom row)",
                                            interactive=False, elem_id="explore-grid", height=200)
                    walk_image = gr.Image(label="Latent walk: frozen | adapted", interactive=False,
                                          elem_id="walk-image", height=200)
                    video = gr.Video(label="Latent walk video", elem_id="walk-video")

            def show(run_, seeds_, trunc_, t_):
                try:
                    g, w = explore_images(run_, seeds_, trunc_, t_, render_device)
                except StylenadaError as e:
                    return error_markdown(e), gr.skip(), gr.skip()
                return "", g, w

            def make_video(run_, seeds_, trunc_):
                try:
                    return "", str(explore_video(run_, seeds_, trunc_, runs_root / "videos", render_device))
                except StylenadaError as e:
                    return error_markdown(e), None

            explore_inputs = [explore_run, seeds, truncation, walk]
            show_btn.click(show, explore_inputs, [explore_message, explore_grid, walk_image])
            walk.release(show, explore_inputs, [explore_message, explore_grid, walk_image])
            truncation.release(show, explore_inputs, [explore_message, explore_grid, walk_image])
            video_btn.click(make_video, [explore_run, seeds, truncation], [explore_message, video])
            def refresh_runs():
                return [gr.update(choices=listed_runs())] * 2

            for trigger in (refresh_btn.click, edit_tab.select, explore_tab.select):
                trigger(refresh_runs, None, [explore_run, adapted])
    return app


def _pad(result, n: int):
    """A handler's tuple, or its error message followed by n - 1 empty outputs."""
    return result if isinstance(result, tuple) else (result, *[None] * (n - 1))


def launch(settings: UISettings, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
           block: bool = True):
    """Build and serve the app; returns (app, local URL)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    settings.runs.mkdir(parents=True, exist_ok=True)
    app = build_app(settings)
    allowed = {str(settings.runs.resolve()), str(Path(settings.base.generator).resolve().parent)}
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # no web fonts: works offline
    _, url, _ = app.launch(server_name=host, server_port=port, share=share, allowed_paths=sorted(allowed),
                           prevent_thread_lock=not block, quiet=False, ssr_mode=False, theme=theme, css=CSS)
    return app, url


__all__ = ["UISettings", "build_app", "launch"]
