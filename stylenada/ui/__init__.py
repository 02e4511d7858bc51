"""``stylenada ui``: a browser UI (Gradio) for adaptation, editing and exploring runs. Needs the ``[ui]`` extra."""

from .worker import RunStatus, TrainingWorker

__all__ = ["RunStatus", "TrainingWorker"]
