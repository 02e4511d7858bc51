"""The UI's training worker: one adaptation at a time, in a background thread, in a normal run folder.

The run folder is the same as ``stylenada train`` writes (:class:`~stylenada.utils.rundir.RunDir`), with the
same checkpoints, so a run started here resumes with ``stylenada train --resume RUN`` and the other way round.
The worker belongs to the server process, not to a browser session: closing the page does not stop a run,
and a page opened later shows it.
"""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..adapt.config import TrainConfig
from ..errors import StylenadaError, first_line
from ..utils.rundir import RunDir

log = logging.getLogger(__name__)

STATES = ("idle", "running", "stopping", "stopped", "finished", "failed")


@dataclass(frozen=True)
class RunStatus:
    """What the page shows about the worker's current (or last) run."""

    state: str  # one of STATES
    run_dir: Path | None
    step: int
    iters: int
    message: str = ""

    @property
    def busy(self) -> bool:
        return self.state in ("running", "stopping")


class TrainingWorker:
    """Starts, stops and resumes adaptation runs, one at a time (a second start while one runs is refused)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._trainer = None
        self._state, self._message = "idle", ""
        self._run_dir: Path | None = None
        self._iters = 0

    # --- commands ----------------------------------------------------------------------------------
    def start(self, cfg: TrainConfig) -> Path:
        """Begin a new run into ``cfg.out``; the cheap checks (options, a free run folder) raise at once."""
        cfg.validate()
        if RunDir.is_run(cfg.out):
            raise StylenadaError(f"{cfg.out} already holds a run: press Resume to continue it, or choose another "
                                 "run folder")
        return self._launch(Path(cfg.out), cfg.iters, lambda: self._new_trainer(cfg, resume=False))

    def resume(self, run_dir: str | Path, iters: int | None = None) -> Path:
        """Continue the run in ``run_dir`` from its last checkpoint (to ``iters`` steps when given)."""
        run = RunDir.open(run_dir)
        cfg = TrainConfig.from_dict(run.load_config())
        cfg.out = str(run.path)
        if iters is not None:
            cfg.iters = iters
        if run.summary.is_file() and len(run.records()) >= cfg.iters:
            raise StylenadaError(f"{run.path} already finished its {cfg.iters} steps: raise the number of steps "
                                 "to continue it")
        return self._launch(run.path, cfg.iters, lambda: self._new_trainer(cfg, resume=True))

    def stop(self) -> bool:
        """Ask the running run to stop after its current step (it writes a checkpoint); False if none runs."""
        with self._lock:
            if not self._alive():
                return False
            self._stop.set()
            self._state = "stopping"
            return True

    def wait(self, timeout: float | None = None) -> RunStatus:
        """Block until the current run ends (or ``timeout`` seconds pass); its status."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status()

    def status(self) -> RunStatus:
        with self._lock:
            trainer = self._trainer
            step = trainer.step if trainer is not None else self._logged_steps()
            return RunStatus(self._state, self._run_dir, step, self._iters, self._message)

    # --- the thread --------------------------------------------------------------------------------
    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _logged_steps(self) -> int:
        if self._run_dir is None:
            return 0
        records = RunDir(self._run_dir).records()
        return int(records[-1]["step"]) + 1 if records else 0

    @staticmethod
    def _new_trainer(cfg: TrainConfig, resume: bool):
        from ..adapt.trainer import Trainer

        trainer = Trainer(cfg, resume=resume)
        if resume:
            trainer.restore()
        return trainer

    def _launch(self, run_dir: Path, iters: int, make_trainer) -> Path:
        with self._lock:
            if self._alive():
                raise StylenadaError(f"a run is in progress ({self._run_dir}): stop it first, or wait until it "
                                     "finishes (one run at a time)")
            self._stop.clear()
            self._trainer = None
            self._state, self._message = "running", ""
            self._run_dir, self._iters = run_dir.resolve(), iters
            self._thread = threading.Thread(target=self._work, args=(make_trainer,), name="stylenada-train",
                                            daemon=True)
            self._thread.start()
        return self._run_dir

    def _work(self, make_trainer) -> None:
        try:
            trainer = make_trainer()
            with self._lock:
                self._trainer = trainer
            result = trainer.run(progress=False, stop=self._stop.is_set)
            state = "stopped" if result.stopped else "finished"
            message = (f"stopped at step {trainer.step}: press Resume to continue" if result.stopped
                       else f"finished {trainer.step} steps in {result.metrics['seconds']:.1f} s")
        except StylenadaError as e:
            state, message = "failed", str(e)
        except Exception as e:  # shown on the page; the traceback goes to the server's log
            log.error("training failed:\n%s", traceback.format_exc())
            state, message = "failed", f"{type(e).__name__}: {first_line(e)}"
        with self._lock:
            self._state, self._message = state, message


__all__ = ["STATES", "RunStatus", "TrainingWorker"]
