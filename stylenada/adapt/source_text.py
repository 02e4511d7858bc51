"""Source text: fixed, or chosen by CLIP from candidate captions of what the frozen generator makes.

With dynamic source text, every ``interval`` steps CLIP scores each candidate caption against a batch
of frozen-generator images (mean cosine, summed over the CLIP models with their weights); the best
caption becomes the source text and the text direction is recomputed from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import StylenadaError

SOURCE_TEXT_MODES = ("static", "dynamic")

# Built-in candidates, by the generator's domain (plugins add theirs with register_candidates).
CANDIDATES: dict[str, list[str]] = {
    "faces": ["photo", "a photo of a face", "a photo of a person", "a portrait photo", "a photo of a man",
              "a photo of a woman", "a close-up photo of a face", "a face", "a human face", "a selfie"],
    "cars": ["photo", "a photo of a car", "a car", "a car on a road", "a photo of a vehicle", "a parked car"],
    "churches": ["photo", "a photo of a church", "a church", "a building", "a photo of a cathedral"],
    "animals": ["photo", "a photo of a dog", "a photo of a cat", "a photo of an animal", "a pet", "a dog", "a cat"],
    "general": ["photo", "a photo", "an image", "a picture", "a painting", "a drawing", "a sketch", "a rendering"],
}


def register_candidates(name: str, captions: list[str]) -> None:
    """Add a named list of candidate captions (``--source-candidates NAME``)."""
    CANDIDATES[name] = list(captions)


def candidate_list(spec: str | list[str] | None) -> list[str]:
    """Candidates from a built-in list name, a comma-separated string, or a list."""
    from ..plugins import load_plugins

    load_plugins()
    if spec is None:
        spec = "general"
    if isinstance(spec, str):
        if spec in CANDIDATES:
            return list(CANDIDATES[spec])
        items = [s.strip() for s in spec.split(",")]
    else:
        items = [str(s).strip() for s in spec]
    items = [s for s in items if s]
    if len(items) < 2:
        raise StylenadaError(
            f"dynamic source text needs at least 2 candidate captions, got {items!r}: pass a comma-separated list "
            f"or one of the built-in lists {', '.join(CANDIDATES)}")
    return items


@dataclass
class SourceChoice:
    step: int
    text: str
    scores: dict[str, float]

    def to_json(self) -> dict:
        return {"step": self.step, "source": self.text, "scores": self.scores}


@torch.no_grad()
def best_caption(images: torch.Tensor, candidates: list[str], clip_models, templates: str) -> tuple[str, dict]:
    """The candidate caption that CLIP finds closest to ``images`` (mean cosine, weighted over models)."""
    scores = torch.zeros(len(candidates))
    for model, weight in clip_models:
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = torch.stack([model.text_embedding(c, templates) for c in candidates]).to(img)
        scores += weight * (img @ F.normalize(txt, dim=-1).T).mean(dim=0).cpu()
    best = int(scores.argmax())
    return candidates[best], dict(zip(candidates, scores.tolist(), strict=True))
