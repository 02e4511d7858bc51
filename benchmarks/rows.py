"""The resumable results file of a study benchmark: one JSON object a line, appended as each run ends, so
that a re-run skips what is done."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


class ResultRows:
    """The rows of ``path`` (none when it does not exist yet) and the keys of those done."""

    def __init__(self, path: str | Path, key: Callable[[dict], tuple]):
        self.path, self.key = Path(path), key
        text = self.path.read_text() if self.path.exists() else ""
        self.records = [json.loads(line) for line in text.splitlines() if line.strip()]
        self.done = {key(r) for r in self.records}

    def __contains__(self, row: dict) -> bool:
        return self.key(row) in self.done

    def add(self, rows: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        self.records.extend(rows)
        self.done.update(self.key(r) for r in rows)
