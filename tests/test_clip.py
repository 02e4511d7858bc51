"""stylenada.clip on a tiny random open_clip model (tests/data/stylenada-test-clip.json); no network."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stylenada.clip import (
    IMAGENET_TEMPLATES,
    SINGLE_TEMPLATE,
    ClipEnsemble,
    ClipModel,
    ClipSpec,
    PreprocessConfig,
    load_clip,
    load_clip_ensemble,
    parse_clip_spec,
    preprocess_for_clip,
    resolve_templates,
    text_direction,
    text_embedding,
)
from stylenada.errors import StylenadaError

open_clip = pytest.importorskip("open_clip")

TEST_MODEL = "stylenada-test-clip"  # ViT 32px/patch 8/width 64/2 layers; text width 32/2 layers; embed 32
CONFIG = Path(__file__).parent / "data" / f"{TEST_MODEL}.json"
SIGLIP_LIKE = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "resize_mode": "squash"}

# Largest difference allowed between our tensor preprocessing and open_clip's transform on a PIL image,
# in [0, 1] pixel units. PIL resizes uint8 with fixed-point weights and rounds its output to uint8;
# on smooth uint8 images we measured at most 1.09/255 (shortest, squash, longest, bilinear, padding).
PIL_TOLERANCE = 1.5 / 255


@pytest.fixture(scope="module")
def registered():
    if TEST_MODEL not in open_clip.list_models():
        open_clip.add_model_config(CONFIG)
    return TEST_MODEL


@pytest.fixture(scope="module")
def tokenizer(registered):
    return open_clip.get_tokenizer(registered)


def make_open_clip(seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return open_clip.create_model(TEST_MODEL, **kwargs)


@pytest.fixture(scope="module")
def clip(registered, tokenizer) -> ClipModel:
    return ClipModel(make_open_clip(), tokenizer, name=TEST_MODEL)


def smooth_uint8_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """[1, 3, h, w] uint8 image of low spatial frequency (so that PIL's uint8 clamping never bites)."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 5, 5, generator=gen)
    img = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=True)
    return (img * 200 + 28).round().to(torch.uint8)


# --- specs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ViT-B-32:openai", ClipSpec("ViT-B-32", "openai", 1.0)),
        ("ViT-B-16:laion2b_s34b_b88k", ClipSpec("ViT-B-16", "laion2b_s34b_b88k", 1.0)),
        ("ViT-B-16-SigLIP:webli", ClipSpec("ViT-B-16-SigLIP", "webli", 1.0)),
        ("ViT-B-32:/path/to/file.pt", ClipSpec("ViT-B-32", "/path/to/file.pt", 1.0)),
        ("ViT-B-32:openai@0.5", ClipSpec("ViT-B-32", "openai", 0.5)),
        (" ViT-B/32 : openai @ 2 ", ClipSpec("ViT-B-32", "openai", 2.0)),
        ("ViT-B-32:/data/w@v2.bin", ClipSpec("ViT-B-32", "/data/w@v2.bin", 1.0)),
        ("ViT-B-32:./w.safetensors@0.25", ClipSpec("ViT-B-32", "./w.safetensors", 0.25)),
        ("tiny-shapes", ClipSpec("tiny-shapes", None, 1.0)),
        ("tiny-shapes@3", ClipSpec("tiny-shapes", None, 3.0)),
        ("hf-hub:org/repo", ClipSpec("hf-hub:org/repo", None, 1.0)),
    ],
)
def test_parse_clip_spec(text, expected):
    spec = parse_clip_spec(text)
    assert spec == expected
    assert parse_clip_spec(str(spec)) == spec  # str() round-trips


@pytest.mark.parametrize(
    "text, words",
    [
        ("ViT-B-32:openai@0", "finite number > 0"),
        ("ViT-B-32:openai@-1", "finite number > 0"),
        ("ViT-B-32:openai@nan", "finite number > 0"),
        ("ViT-B-32:openai@inf", "finite number > 0"),
        ("ViT-B-32:openai@heavy", "number after '@'"),
        ("ViT-B-32:", "no weights after ':'"),
        ("   ", "empty CLIP spec"),
    ],
)
def test_parse_clip_spec_errors(text, words):
    with pytest.raises(StylenadaError, match=words):
        parse_clip_spec(text)


def test_spec_weight_must_be_positive():
    with pytest.raises(StylenadaError, match="> 0"):
        ClipSpec("ViT-B-32", "openai", 0.0)


# --- templates ----------------------------------------------------------------------------------------


def test_templates_are_clips_80_imagenet_templates():
    assert len(IMAGENET_TEMPLATES) == len(set(IMAGENET_TEMPLATES)) == 80
    assert IMAGENET_TEMPLATES == tuple(t("{}") for t in open_clip.OPENAI_IMAGENET_TEMPLATES)
    assert resolve_templates("imagenet") == IMAGENET_TEMPLATES
    assert resolve_templates("single") == (SINGLE_TEMPLATE,) == ("a photo of a {}",)
    assert resolve_templates(["a {} b", "{}!"]) == ("a {} b", "{}!")
    for bad in ([], ["no placeholder"], ["{} and {}"], "nonexistent-set"):
        with pytest.raises(StylenadaError):
            resolve_templates(bad)


# --- preprocessing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("force", [{}, SIGLIP_LIKE, {"interpolation": "bilinear"}])
@pytest.mark.parametrize("hw", [(64, 64), (64, 48), (37, 90), (20, 20), (32, 32)])
def test_preprocess_equals_open_clip_transform_on_tensors(registered, force, hw):
    model = make_open_clip(force_preprocess_cfg=force)
    clip = ClipModel(model)
    transform = open_clip.image_transform(**_transform_kwargs(model))
    x = torch.rand(2, 3, *hw) * 2 - 1
    ours = clip.preprocess(x)
    ref = torch.stack([transform((img + 1) / 2) for img in x])
    assert ours.shape == ref.shape == (2, 3, 32, 32)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "force, image_size",
    [({}, None), (SIGLIP_LIKE, None), ({"resize_mode": "longest", "fill_color": 128}, (32, 48)), ({}, (32, 48))],
)
@pytest.mark.parametrize("hw", [(64, 64), (64, 48), (37, 90)])
def test_preprocess_matches_open_clip_transform_on_pil(registered, force, image_size, hw):
    from PIL import Image

    model = make_open_clip(force_preprocess_cfg=force, force_image_size=image_size)
    clip = ClipModel(model)
    transform = open_clip.image_transform(**_transform_kwargs(model))
    u8 = smooth_uint8_image(*hw)
    ours = clip.preprocess(u8.float() / 127.5 - 1)[0]
    ref = transform(Image.fromarray(u8[0].permute(1, 2, 0).numpy()))
    assert ours.shape == ref.shape
    std = torch.tensor(clip.preprocess_config.std).view(3, 1, 1)
    assert ((ours - ref).abs() * std).max() <= PIL_TOLERANCE


def _transform_kwargs(model) -> dict:
    cfg = model.visual.preprocess_cfg
    return dict(image_size=cfg["size"], is_train=False, mean=cfg["mean"], std=cfg["std"],
                resize_mode=cfg["resize_mode"], interpolation=cfg["interpolation"], fill_color=cfg["fill_color"])


def test_preprocess_config_comes_from_the_model(registered):
    clip = ClipModel(make_open_clip(force_preprocess_cfg=SIGLIP_LIKE))
    cfg = clip.preprocess_config
    assert (cfg.mean, cfg.std, cfg.resize_mode, cfg.image_size) == ((0.5,) * 3, (0.5,) * 3, "squash", (32, 32))
    x = torch.zeros(1, 3, 32, 32)  # mid-grey -> 0 under mean 0.5 / std 0.5
    assert clip.preprocess(x).abs().max() == 0


def test_preprocess_is_differentiable():
    cfg = PreprocessConfig((8, 8), (0.4, 0.5, 0.6), (0.2, 0.3, 0.4))
    x = (torch.rand(1, 3, 13, 11, dtype=torch.float64) * 2 - 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: preprocess_for_clip(t, cfg), (x,))


def test_encode_image_grad_reaches_input_not_clip(clip):
    params = list(clip.parameters())
    assert params and not any(p.requires_grad for p in params)
    clip.train()
    assert not clip.model.training  # stays in eval mode
    x = (torch.rand(2, 3, 48, 48) * 2 - 1).requires_grad_()
    feats = clip.encode_image(x)
    assert feats.shape == (2, clip.embed_dim) == (2, 32)
    feats.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    assert all(p.grad is None for p in params)
    unit = clip.encode_image(x.detach(), normalize=True)
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(2))


# --- text ---------------------------------------------------------------------------------------------


def count_text_calls(clip: ClipModel, monkeypatch) -> list:
    calls = []
    original = clip.model.encode_text

    def counting(tokens, *args, **kwargs):
        calls.append(tokens.shape[0])
        return original(tokens, *args, **kwargs)

    monkeypatch.setattr(clip.model, "encode_text", counting)
    return calls


def test_text_embedding_is_cached(clip, monkeypatch):
    clip.clear_text_cache()
    calls = count_text_calls(clip, monkeypatch)
    a = clip.text_embedding("pencil sketch", "imagenet")
    assert calls == [80]  # one call, all templates in one batch
    b = clip.text_embedding("pencil sketch", list(IMAGENET_TEMPLATES))  # same key: a list equals the tuple
    c = text_embedding(clip, "  pencil sketch ")  # stripped
    assert calls == [80]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    a.zero_()  # callers get copies; the cache is untouched
    assert clip.text_embedding("pencil sketch").norm() > 0.99
    clip.text_embedding("pencil sketch", "single")
    clip.text_direction("photo", "pencil sketch")  # only "photo" is new
    assert calls == [80, 1, 80]


def test_text_embedding_averages_normalised_template_embeddings(clip):
    templates = ["a photo of a {}.", "a drawing of a {}.", "art of a {}."]
    emb = clip.text_embedding("dog", templates)
    assert emb.shape == (clip.embed_dim,)
    assert math.isclose(emb.norm().item(), 1.0, rel_tol=1e-5)
    feats = clip.encode_text([t.format("dog") for t in templates])
    expected = F.normalize(F.normalize(feats, dim=-1).mean(0), dim=-1)
    torch.testing.assert_close(emb, expected)
    assert not emb.requires_grad


def test_text_direction_is_nadas_definition(clip):
    templates = ["a photo of a {}.", "a sketch of a {}."]
    d = text_direction(clip, "photo", "sketch", templates)
    src = F.normalize(clip.encode_text([t.format("photo") for t in templates]), dim=-1)
    tgt = F.normalize(clip.encode_text([t.format("sketch") for t in templates]), dim=-1)
    torch.testing.assert_close(d, F.normalize((tgt - src).mean(0), dim=-1))
    assert math.isclose(d.norm().item(), 1.0, rel_tol=1e-5)


@pytest.mark.parametrize("source, target", [("", "sketch"), ("photo", "   "), ("photo", "photo")])
def test_bad_prompts(clip, source, target):
    with pytest.raises(StylenadaError, match="empty prompt|same"):
        clip.text_direction(source, target)


def test_empty_prompt_message(clip):
    with pytest.raises(StylenadaError, match=r"empty prompt: give a non-empty --source/--target text"):
        clip.text_embedding(" \t")
    with pytest.raises(StylenadaError, match="empty prompt"):
        clip.encode_text(["a", ""])


# --- ensembles ----------------------------------------------------------------------------------------


def test_ensemble(clip):
    ens = ClipEnsemble([clip, clip], [1, 0.5])
    assert len(ens) == 2 and list(ens) == [(clip, 1.0), (clip, 0.5)]
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(StylenadaError, match="> 0"):
            ClipEnsemble([clip], [bad])
    with pytest.raises(StylenadaError, match="no CLIP model"):
        ClipEnsemble([])


# --- loading ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_load_local_checkpoint(clip, tmp_path, suffix):
    path = tmp_path / f"weights{suffix}"
    state = clip.model.state_dict()
    if suffix == ".pt":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded = load_clip(f"{TEST_MODEL}:{path}@0.5")
    assert loaded.spec == ClipSpec(TEST_MODEL, str(path), 0.5)
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.model.training
    assert loaded.preprocess_config == clip.preprocess_config
    x = torch.rand(2, 3, 40, 40) * 2 - 1
    assert torch.equal(loaded.encode_image(x), clip.encode_image(x))
    assert torch.equal(loaded.encode_text(["a cat", "a dog"]), clip.encode_text(["a cat", "a dog"]))


def test_load_ensemble_loads_each_model_once(clip, tmp_path):
    path = tmp_path / "w.pt"
    torch.save(clip.model.state_dict(), path)
    ens = load_clip_ensemble([f"{TEST_MODEL}:{path}", f"{TEST_MODEL}:{path}@2"])
    (m1, w1), (m2, w2) = ens
    assert m1 is m2 and (w1, w2) == (1.0, 2.0)


def test_hub_tag_without_network_names_local_file(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", no_network)
    with pytest.raises(StylenadaError) as err:
        load_clip("ViT-B-32:openai")
    msg = str(err.value)
    assert "ViT-B-32:openai" in msg and "download" in msg and "\n" not in msg
    # OpenAI weights were trained with QuickGELU: the hint names the matching architecture
    assert "--clip ViT-B-32-quickgelu:/path/to/open_clip_pytorch_model.bin" in msg


@pytest.mark.parametrize(
    "spec, words",
    [
        ("ViT-Q-99:openai", r"unknown CLIP model 'ViT-Q-99'.*list_pretrained"),
        ("ViT-B-32:/nonexistent/weights.pt", "CLIP weights file not found: /nonexistent/weights.pt"),
        ("ViT-B-32:notatag", "unknown pretrained tag 'notatag'.*openai"),
        ("ViT-B-32", "no weights given"),
        ("tiny-shapes:/x.pt", "takes no weights"),
    ],
)
def test_load_errors(spec, words):
    with pytest.raises(StylenadaError, match=words):
        load_clip(spec)


def test_load_corrupt_file(registered, tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(StylenadaError, match="could not load CLIP weights"):
        load_clip(f"{TEST_MODEL}:{path}")


def test_local_file_gets_the_tags_preprocessing():
    from stylenada.clip.models import _unanimous_tag_settings

    siglip = _unanimous_tag_settings("ViT-B-16-SigLIP")
    assert siglip["mean"] == (0.5, 0.5, 0.5) and siglip["resize_mode"] == "squash"
    assert "quick_gelu" not in _unanimous_tag_settings("ViT-B-32")  # openai (QuickGELU) and LAION (GELU) differ
    assert _unanimous_tag_settings("ViT-B-32-quickgelu")["quick_gelu"] is True


def test_tiny_shapes_is_loaded_lazily(registered, tokenizer, monkeypatch):
    model = make_open_clip(seed=1)
    fake = types.ModuleType("stylenada.toy.tiny_clip")
    fake.load_tiny_clip = lambda device="cpu", name="tiny-shapes": (model, tokenizer)
    monkeypatch.setitem(sys.modules, "stylenada.toy.tiny_clip", fake)
    clip = load_clip("tiny-shapes@0.5")
    assert clip.model is model and clip.spec.weight == 0.5 and clip.name == "tiny-shapes"
    assert clip.text_embedding("a red circle").shape == (32,)


def test_clip_sees_the_saved_image_not_out_of_range_values(random_clip):
    """Pixels pushed past white or black are judged as saved (clamped): no hidden signal for CLIP."""
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    pushed = x.clone()
    pushed[:, 2] = torch.where(x[:, 2] > 0.9, x[:, 2] + 1.5, x[:, 2])  # blue channel far past white
    with torch.no_grad():
        e_pushed, e_clamped = random_clip.encode_image(pushed), random_clip.encode_image(pushed.clamp(-1, 1))
    assert torch.allclose(e_pushed, e_clamped, atol=1e-6)


def test_uncached_hub_weights_without_network_fail_at_once(monkeypatch):
    import stylenada.clip.models as M

    monkeypatch.setattr(M, "_weights_cached", lambda cfg: False)
    monkeypatch.setattr(M, "_hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr("open_clip.create_model", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(StylenadaError, match="cannot be reached") as e:
        load_clip("ViT-B-32:openai")
    assert "\n" not in str(e.value) and "/path/to/" in str(e.value)
