"""Shared plumbing of the training scripts: options from a config dataclass, and the log beside the output."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def config_parser(config_cls: type, doc: str | None) -> argparse.ArgumentParser:
    """An ArgumentParser with one ``--option`` per field of ``config_cls`` (tuples take several values)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(config_cls):
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(f.default, bool):
            ap.add_argument(flag, type=_parse_bool, default=f.default, metavar="{true,false}")
        elif isinstance(f.default, tuple):
            ap.add_argument(flag, type=type(f.default[0]), nargs=len(f.default), default=list(f.default))
        else:
            ap.add_argument(flag, type=type(f.default), default=f.default)
    return ap


def log_record(log: list[dict], rec: dict, progress: bool) -> None:
    """Append a training record to the log and, with a progress bar, print it above the bar."""
    log.append(rec)
    if progress:
        from tqdm import tqdm

        tqdm.write(json.dumps(rec))


def write_log(out: str | Path, config, log: list[dict], **extra) -> Path:
    """``OUT.json`` beside a trained file: its config, training log and anything else worth keeping."""
    path = Path(str(out) + ".json")
    path.write_text(json.dumps({"config": dataclasses.asdict(config), **extra, "log": log}, indent=2))
    return path
