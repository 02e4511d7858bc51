"""The run folder of ``stylenada train`` (and of the demo): one place that knows its layout.

    RUN/config.json                 every option of the run (TrainConfig)
    RUN/metrics.jsonl               one record per step: losses, lambdas, source text, layer selection
    RUN/summary.json                summary metrics of the finished run
    RUN/generator.safetensors       the adapted generator (native format); generator.pt with --export-rosinality
    RUN/domain.safetensors          with --params stylespace|affine: the change alone (stylenada.adapt.domains)
    RUN/multidomain.safetensors     with --targets FILE: the multi-domain model instead of a generator
    RUN/samples/stepNNNNNN.png      frozen top row, adapted below; samples/final.png at the end
    RUN/checkpoints/stepNNNNNN.{safetensors,state.pt}, checkpoints/latest.json   for --resume
    RUN/tensorboard/                TensorBoard events
    RUN/eval.json                   written by `stylenada evaluate`
    RUN/demo_metrics.json, before_after.png, curves.png   written by `stylenada demo`
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import StylenadaError


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # --- the layout ------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def generator(self) -> Path:
        return self.path / "generator.safetensors"

    @property
    def domain(self) -> Path:
        return self.path / "domain.safetensors"

    @property
    def multidomain(self) -> Path:
        return self.path / "multidomain.safetensors"

    @property
    def generator_pt(self) -> Path:
        return self.path / "generator.pt"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest.json"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    @property
    def eval(self) -> Path:
        return self.path / "eval.json"

    @property
    def demo_metrics(self) -> Path:
        return self.path / "demo_metrics.json"

    def sample(self, step: int | str) -> Path:
        return self.samples / (f"step{step:06d}.png" if isinstance(step, int) else f"{step}.png")

    def checkpoint(self, name: str) -> tuple[Path, Path]:
        """(generator weights, training state) of checkpoint ``name`` (e.g. 'step000100')."""
        return self.checkpoints / f"{name}.safetensors", self.checkpoints / f"{name}.state.pt"

    # --- questions -------------------------------------------------------------------------------
    @staticmethod
    def is_run(path: str | Path) -> bool:
        return (Path(path) / "config.json").is_file()

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """The run folder at ``path``; the one error for anything else."""
        run = cls(Path(path))
        if not run.config.is_file():
            raise StylenadaError(f"{run.path} is not a run folder (no config.json): pass the --out folder of a "
                                 "`stylenada train` or `stylenada demo` run")
        return run

    def load_config(self) -> dict:
        return json.loads(self.config.read_text())

    def records(self) -> list[dict]:
        """The per-step records of metrics.jsonl (empty before the first step). A last line cut short (the
        process was killed while appending it) is left out; a broken line before it is an error."""
        if not self.metrics.is_file():
            return []
        lines = [line for line in self.metrics.read_text().splitlines() if line.strip()]
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    break
                raise StylenadaError(f"{self.metrics}: line {i + 1} is not JSON; the log is corrupt (remove that "
                                     "line to continue the run)") from None
        return records

    def latest_checkpoint(self) -> str | None:
        """Name of the newest checkpoint, or None."""
        if not self.latest.is_file():
            return None
        return json.loads(self.latest.read_text())["name"]

    def adapted_generator(self) -> Path | None:
        """The final generator, else the newest checkpoint's weights, else None (a run that has not
        written either yet)."""
        if self.generator.is_file():
            return self.generator
        name = self.latest_checkpoint()
        return self.checkpoint(name)[0] if name is not None else None

    def source_generator(self) -> str:
        """The frozen generator the run started from, as its config names it."""
        return self.load_config()["generator"]


def free_run_dir(path: str | Path) -> Path:
    """``path`` if it does not exist yet, else the first free ``path-1``, ``path-2``, ..."""
    path = Path(path)
    if not path.exists():
        return path
    i = 1
    while Path(f"{path}-{i}").exists():
        i += 1
    return Path(f"{path}-{i}")


__all__ = ["RunDir", "free_run_dir"]
