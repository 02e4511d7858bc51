"""Source text: fixed, or chosen by CLIP from candidate captions of what the frozen generator makes.

With dynamic source text, every ``interval`` steps CLIP scores each candidate caption against a batch
of frozen-generator images (mean cosine, summed over the CLIP models with their weights); the best
caption becomes the source text and the text direction is recomputed from it. The frozen generator never
changes, so each re-caption is one more batch of the same distribution: the scores are averaged over every
batch so far (:class:`CaptionScores`), and the choice settles instead of flipping between captions that one
batch scores about equally. Captions that describe the images about equally well (:data:`NEAR_TIE`) are
told apart by their closeness to the target text: the source should differ from the target in what is to
change and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import StylenadaError

SOURCE_TEXT_MODES = ("static", "dynamic")
# Candidates whose image score lies within this share of the way from the best score down to the median one
# describe the images about equally well (the shapes world's teachers score its true captions within 1% of each
# other); among them the caption nearest the target text wins. Without it the colour task's source became "a
# shape on a white background", whose direction to "a blue shape" asks the background to change too (as a
# static source, seed 2: 0% success, 27% preserved, against 100% / 95% with "a red shape").
NEAR_TIE = 0.1

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


@dataclass
class CaptionScores:
    """Each candidate's image score summed over the batches scored so far (a run's re-captions)."""

    total: torch.Tensor | None = None
    images: int = 0

    def add(self, per_image: torch.Tensor) -> torch.Tensor:
        """Add a batch's per-image scores [N, C]; returns the mean score of each candidate over every image."""
        batch = per_image.sum(dim=0)
        self.total = batch if self.total is None else self.total + batch
        self.images += per_image.shape[0]
        return self.total / self.images

    def state_dict(self) -> dict:
        return {"total": self.total, "images": self.images}

    def load_state_dict(self, state: dict) -> None:
        self.total, self.images = state["total"], int(state["images"])


@torch.no_grad()
def best_caption(images: torch.Tensor, candidates: list[str], clip_models, templates: str,
                 target: str | None = None, near_tie: float = NEAR_TIE,
                 history: CaptionScores | None = None) -> tuple[str, dict]:
    """The candidate caption that CLIP finds closest to ``images`` (mean cosine, weighted over models), and
    every candidate's score. With ``target``: of the candidates scoring within ``near_tie`` of the way from
    the best score to the median, the one whose text is nearest the target's; never the target itself (the
    direction would vanish), whose place the best-scoring other candidate takes. With ``history``, the
    images are added to it and its mean over every batch so far is the score."""
    per_image, to_target = torch.zeros(len(images), len(candidates)), torch.zeros(len(candidates))
    for model, weight in clip_models:
        img = F.normalize(model.encode_image(images), dim=-1)
        txt = F.normalize(torch.stack([model.text_embedding(c, templates) for c in candidates]).to(img), dim=-1)
        per_image += weight * (img @ txt.T).float().cpu()
        if target is not None:
            t = F.normalize(model.text_embedding(target, templates).to(img), dim=-1)
            to_target += weight * (txt @ t).cpu()
    scores = per_image.mean(dim=0) if history is None else history.add(per_image)
    best = int(scores.argmax())
    if target is not None:
        allowed = torch.tensor([c.strip().lower() != target.strip().lower() for c in candidates])
        near = allowed & (scores >= scores[best] - near_tie * (scores[best] - scores.median()))
        if near.any():
            best = int(torch.where(near, to_target, torch.full_like(to_target, -torch.inf)).argmax())
        elif allowed.any():
            best = int(torch.where(allowed, scores, torch.full_like(scores, -torch.inf)).argmax())
    return candidates[best], dict(zip(candidates, scores.tolist(), strict=True))
