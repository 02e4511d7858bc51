"""Real-image editing: pSp/e4e encoders, optimisation inversion, FFHQ alignment and the edit command."""

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, randomize_generator
from PIL import Image

from stylenada.cli import main
from stylenada.errors import StylenadaError
from stylenada.formats import save_generator
from stylenada.invert import (
    AlignConfig,
    Encoder,
    EncoderConfig,
    ProjectConfig,
    edit,
    face_quad,
    invert,
    load_encoder,
    project,
    random_encoder,
    save_encoder,
    warp_quad,
)
from stylenada.invert.align import eye_mouth_centres, find_predictor, import_dlib, read_image, to_aligned_coords
from stylenada.invert.encoders import encoder_checkpoint, with_kind
from stylenada.models.stylegan2 import Generator

GOLDEN = Path(__file__).parent / "data" / "golden"
# A tiny encoder for the tiny generator (8 W+ codes of size 32): the official layer layout, few channels.
TINY_ENC = EncoderConfig(kind="e4e", num_styles=8, style_dim=32, depths=(16, 16, 24, 32))

# dlib's 68 landmarks of skimage.data.astronaut() (the face of the largest detection).
ASTRONAUT_LANDMARKS = np.array([
    179, 104, 180, 116, 181, 127, 182, 139, 185, 150, 191, 160, 200, 168, 209, 176, 220, 178, 232, 177, 243, 171,
    253, 163, 260, 154, 265, 143, 268, 131, 270, 120, 272, 108, 186, 94, 192, 88, 200, 87, 208, 89, 216, 92, 236, 93,
    244, 91, 252, 91, 260, 92, 265, 99, 226, 102, 225, 111, 225, 119, 225, 127, 214, 131, 219, 133, 224, 134, 229,
    133, 234, 132, 195, 101, 200, 98, 207, 98, 212, 104, 206, 104, 199, 104, 237, 106, 243, 100, 250, 100, 255, 105,
    250, 107, 244, 107, 201, 139, 209, 139, 218, 139, 224, 141, 230, 140, 238, 140, 246, 141, 238, 151, 229, 155,
    222, 156, 216, 155, 208, 150, 204, 141, 218, 143, 223, 144, 230, 143, 243, 142, 229, 150, 223, 151, 217, 150,
], dtype=np.float64).reshape(68, 2)


@pytest.fixture(autouse=True)
def one_thread():
    """These networks are tiny: one intra-op thread is fastest (and far faster on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def tiny_g(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    return randomize_generator(Generator(TINY), seed).eval()


def g_image(G: Generator, seed: int = 5) -> torch.Tensor:
    with torch.no_grad():
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(seed))
        return G(z, noise_mode="const").clamp(-1, 1)


def save_png(x: torch.Tensor, path: Path) -> Path:
    arr = ((x[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(arr).save(path)
    return path


# --- encoders: exactness against the reference code -------------------------------------------------------


@pytest.mark.parametrize("kind", ["e4e", "psp"])
def test_golden_encoder_matches_reference(kind):
    """encoder_tiny.pt was built and run by the official e4e / pSp code (see tests/data/golden/README.md)."""
    ref = np.load(GOLDEN / "encoder_tiny.npz")
    E = load_encoder(GOLDEN / "encoder_tiny.pt", kind=None if kind == "e4e" else "psp")
    assert E.cfg.kind == kind and E.num_ws == 8 and E.cfg.depths == (16, 16, 24, 24)
    x = torch.from_numpy(ref["x_u8"]).float() / 127.5 - 1
    with torch.no_grad():
        assert np.abs(E.encode(x).numpy() - ref[f"{kind}_codes_raw"]).max() <= 1e-4
        assert np.abs(E(x).numpy() - ref[f"{kind}_latents"]).max() <= 1e-4


def test_full_size_keys_and_shapes_match_official_checkpoints():
    """Parameter names/shapes of the official 1024px e4e/pSp layout (recorded from the reference code)."""
    from stylenada.formats.rosinality import infer_config, to_native
    from stylenada.models.stylegan2 import GeneratorConfig

    doc = json.loads((GOLDEN / "encoder_keys.json").read_text())
    for kind in ("e4e", "psp"):
        with torch.device("meta"):
            E = Encoder(EncoderConfig(kind=kind))
        assert {k: list(v.shape) for k, v in E.encoder.state_dict().items()} == doc["encoder"]
    assert doc["e4e_ffhq_encode"]["latent_avg"] == [18, 512]
    # The stored 1024px decoder (rosinality keys) is understood by the rosinality reader.
    sd = {k: torch.empty(s, device="meta") for k, s in doc["decoder"].items()}
    blur = torch.tensor([1.0, 3, 3, 1])
    for k in sd:
        if k.endswith(".kernel"):
            sd[k] = torch.outer(blur, blur) / 64 * 4
    cfg = infer_config(sd, Path("decoder"))
    assert cfg == GeneratorConfig.from_channel_multiplier(1024, 2)
    with torch.device("meta"):
        native = {k: list(v.shape) for k, v in Generator(cfg).state_dict().items()}
    converted = to_native(sd, torch.empty(512, device="meta"), cfg)
    assert {k: list(v.shape) for k, v in converted.items()} == native


# --- encoders: checkpoints and architecture inference --------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_encoder():
    return random_encoder(TINY_ENC, seed=1)


def test_encoder_round_trip_with_decoder(tiny_encoder, tmp_path):
    G = tiny_g()
    path = save_encoder(tiny_encoder, tmp_path / "e4e.pt", decoder=G)
    E = load_encoder(path)
    assert E.cfg == TINY_ENC and E.source == str(path)
    x = torch.rand(2, 3, 64, 64) * 2 - 1  # resized to 256 inside
    with torch.no_grad():
        ws = E(x)
        assert ws.shape == (2, 8, 32)
        assert torch.equal(ws, tiny_encoder(x))
        D = E.decoder()
        w = G.mapping(torch.randn(2, 32))
        assert torch.allclose(D.synthesis(w), G.synthesis(w), atol=1e-5)
    assert torch.equal(D.w_avg, E.latent_avg[0])


def test_psp_and_e4e_are_told_apart(tiny_encoder, tmp_path):
    psp = with_kind(tiny_encoder, "psp")
    save_encoder(psp, tmp_path / "psp.pt")
    E = load_encoder(tmp_path / "psp.pt")
    assert E.cfg.kind == "psp"
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        assert not torch.allclose(E(x), tiny_encoder(x))  # same weights, different networks
    # Without encoder_type, e4e's option names decide; without any opts, the caller must say.
    ckpt = encoder_checkpoint(tiny_encoder)
    ckpt["opts"] = {"stylegan_size": 32}
    torch.save(ckpt, tmp_path / "noname.pt")
    assert load_encoder(tmp_path / "noname.pt").cfg.kind == "e4e"
    del ckpt["opts"]
    torch.save(ckpt, tmp_path / "noopts.pt")
    with pytest.raises(StylenadaError, match="kind='psp' or kind='e4e'"):
        load_encoder(tmp_path / "noopts.pt")
    assert load_encoder(tmp_path / "noopts.pt", kind="psp").cfg.kind == "psp"


def test_bad_encoder_checkpoints(tiny_encoder, tmp_path):
    G = tiny_g()
    for name in ("g.pt", "g.safetensors"):
        save_generator(G, tmp_path / name)
        with pytest.raises(StylenadaError, match="not an encoder"):
            load_encoder(tmp_path / name)
    with pytest.raises(StylenadaError, match="NVIDIA.*not an encoder"):
        load_encoder(GOLDEN / "nvidia_tiny.pkl")
    with pytest.raises(StylenadaError, match="not found"):
        load_encoder(tmp_path / "missing.pt")
    (tmp_path / "notes.pt").write_text("hello")
    with pytest.raises(StylenadaError, match="not a PyTorch checkpoint"):
        load_encoder(tmp_path / "notes.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(StylenadaError, match="not a pSp/e4e encoder checkpoint"):
        load_encoder(tmp_path / "other.pt")
    ckpt = encoder_checkpoint(tiny_encoder)
    ckpt["opts"]["encoder_type"] = "BackboneEncoderUsingLastLayerIntoW"
    torch.save(ckpt, tmp_path / "w.pt")
    with pytest.raises(StylenadaError, match="unsupported encoder_type"):
        load_encoder(tmp_path / "w.pt")
    ckpt = encoder_checkpoint(tiny_encoder)
    ckpt["opts"]["stylegan_size"] = 1024
    torch.save(ckpt, tmp_path / "inconsistent.pt")
    with pytest.raises(StylenadaError, match="1024px"):
        load_encoder(tmp_path / "inconsistent.pt")
    ckpt = encoder_checkpoint(tiny_encoder)
    del ckpt["latent_avg"]
    torch.save(ckpt, tmp_path / "noavg.pt")
    with pytest.raises(StylenadaError, match="latent_avg"):
        load_encoder(tmp_path / "noavg.pt")


def test_encoder_generator_mismatch_is_clear():
    E = random_encoder(replace(TINY_ENC, num_styles=18))  # codes for a 1024px generator
    with pytest.raises(StylenadaError, match=r"18 W\+ codes.*1024px.*takes 8.*32px"):
        E.invert(torch.zeros(1, 3, 32, 32), tiny_g())


def test_iterative_encoder_refines_with_feedback():
    G = tiny_g()
    E = random_encoder(replace(TINY_ENC, kind="psp", input_nc=6))
    x = g_image(G)
    with pytest.raises(StylenadaError, match="E.invert"):
        E(x)
    with torch.no_grad():
        one, two = E.invert(x, G, iterations=1), E.invert(x, G, iterations=2)
        y0 = torch.nn.functional.interpolate(G.synthesis(E.latent_avg[None]), size=256, mode="bilinear",
                                             antialias=True)
        x256 = torch.nn.functional.interpolate(x, size=256, mode="bilinear", antialias=True)
        assert torch.allclose(one, E.latent_avg + E.encode(torch.cat([x256, y0], 1)), atol=1e-5)
    assert two.shape == (1, 8, 32) and not torch.allclose(one, two)
    single = random_encoder(TINY_ENC)
    with pytest.raises(StylenadaError, match="single-pass"):
        single.invert(x, G, iterations=3)


# --- optimisation --------------------------------------------------------------------------------------------


def test_projection_lowers_reconstruction_error():
    G = tiny_g()
    x = g_image(G)
    inv = invert(x, G, "optimize", steps=100, config=ProjectConfig(w_avg_samples=2000), progress=False)
    assert inv.ws.shape == (1, 8, 32) and inv.reconstruction.shape == (1, 3, 32, 32)
    print(f"projection PSNR {float(inv.initial_psnr[0]):.2f} -> {float(inv.psnr[0]):.2f} dB")
    assert float(inv.psnr[0]) > float(inv.initial_psnr[0]) + 5


def test_projection_in_w_with_noise():
    G = tiny_g()
    x = g_image(G, seed=9)
    cfg = ProjectConfig(steps=100, space="w", optimize_noise=True, w_avg_samples=500)
    inv = project(x, G, cfg, progress=False)
    assert torch.equal(inv.ws[:, 0], inv.ws[:, -1])  # W: one code for every layer
    assert [m.shape[-1] for m in inv.noise] == [4, 8, 8, 16, 16, 32, 32]
    for m in inv.noise:  # renormalised after every step
        assert abs(float(m.mean())) < 1e-4 and abs(float(m.std(unbiased=False)) - 1) < 1e-3
    assert float(inv.psnr[0]) > float(inv.initial_psnr[0])


def test_encoder_output_refined_by_optimisation(tiny_encoder):
    G = tiny_g()
    x = g_image(G)
    coarse = invert(x, G, tiny_encoder)
    fine = invert(x, G, tiny_encoder, steps=40, config=ProjectConfig(w_avg_samples=500), progress=False)
    assert coarse.noise is None and float(fine.psnr[0]) > float(coarse.psnr[0])


def test_projection_with_clip_feature_loss(random_clip):
    G = tiny_g()
    x = g_image(G)
    inv = project(x, G, ProjectConfig(steps=5, w_avg_samples=200), clip=random_clip, progress=False)
    assert len(inv.losses) == 5 and all(np.isfinite(inv.losses))


# --- alignment geometry (no dlib needed) -----------------------------------------------------------------------


def rotate_points(p: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    """Where PIL's Image.rotate(degrees, center=centre) moves image points (counter-clockwise on screen)."""
    a = np.deg2rad(degrees)
    c = np.asarray(centre)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    return (p - c) @ rot.T + c


def astronaut() -> Image.Image:
    from skimage.data import astronaut as load

    return Image.fromarray(load())


def test_face_quad_is_a_square_around_the_face():
    quad, qsize = face_quad(ASTRONAUT_LANDMARKS)
    sides = np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1)
    assert np.allclose(sides, qsize) and abs(np.dot(quad[1] - quad[0], quad[3] - quad[0])) < 1e-6 * qsize**2
    el, er, mouth = (to_aligned_coords(p[None], quad, 256)[0] for p in eye_mouth_centres(ASTRONAUT_LANDMARKS))
    assert abs(el[1] - er[1]) < 2 and el[0] < 128 < er[0] and mouth[1] > el[1] + 40  # level eyes, mouth below


def test_alignment_undoes_rotation():
    img, lm = astronaut(), ASTRONAUT_LANDMARKS
    centre = (225.0, 130.0)
    rotated_img = img.rotate(20, resample=Image.BICUBIC, center=centre)
    rotated_lm = rotate_points(lm, 20, centre)
    eyes = eye_mouth_centres(rotated_lm)
    assert abs(eyes[0][1] - eyes[1][1]) > 10  # clearly tilted before
    quad, qsize = face_quad(rotated_lm)
    out_lm = to_aligned_coords(rotated_lm, quad, 256)
    assert np.allclose(out_lm, to_aligned_coords(lm, face_quad(lm)[0], 256), atol=1e-6)  # rotation-invariant
    a = warp_quad(img, *face_quad(lm), 256)
    b = warp_quad(rotated_img, quad, qsize, 256)
    assert a.size == b.size == (256, 256)
    diff = np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32))[32:224, 32:224]
    assert diff.mean() < 8  # the same face crop (up to resampling)


def test_alignment_pads_faces_at_the_border():
    img, lm = astronaut(), ASTRONAUT_LANDMARKS
    shifted = img.crop((150, 0, 512, 512))  # the face now touches the left border
    out = warp_quad(shifted, *face_quad(lm - [150, 0]), 64)
    assert out.size == (64, 64) and np.asarray(out)[:, :8].std() > 0  # reflect-padded, not a flat fill


# --- images and dlib -------------------------------------------------------------------------------------------


def test_image_reading_errors(tmp_path):
    with pytest.raises(StylenadaError, match="image not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(StylenadaError, match="not an image file"):
        read_image(tmp_path / "notes.png")
    astronaut().save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(StylenadaError, match="truncated or corrupt"):
        read_image(tmp_path / "truncated.png")
    with pytest.raises(StylenadaError, match="is a folder"):
        read_image(tmp_path)


def test_missing_dlib_and_model_are_explained(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(StylenadaError, match="pip install dlib-bin"):
        import_dlib()
    with pytest.raises(StylenadaError, match="apt-get install libdlib-data"):
        find_predictor(tmp_path / "nowhere.dat")


def dlib_ready() -> str | None:
    """None when dlib and its landmark model are installed, else why not."""
    try:
        import dlib  # noqa: F401

        find_predictor()
    except (ImportError, StylenadaError) as e:
        return str(e)
    return None


_why = dlib_ready()
needs_dlib = pytest.mark.skipif(_why is not None and not os.environ.get("STYLENADA_REQUIRE_DLIB"),
                                reason=f"dlib face alignment unavailable: {_why}")


@needs_dlib
def test_dlib_alignment_of_astronaut():
    from stylenada.invert import align_face, detect_landmarks

    img = np.asarray(astronaut())
    with pytest.raises(StylenadaError, match="found 2 faces.*--largest-face"):
        align_face(img)  # dlib also fires (weakly) on a patch of the suit
    cfg = AlignConfig(multiple_faces="largest")
    face = align_face(img, cfg)
    assert face.image.size == (256, 256)
    assert np.abs(face.landmarks - ASTRONAUT_LANDMARKS).max() <= 2
    # Landmarks found again on the aligned crop: level eyes; also for a tilted copy of the photo.
    rotated = np.asarray(astronaut().rotate(20, resample=Image.BICUBIC, center=(225, 130)))
    for source in (img, rotated):
        out = align_face(source, cfg).image
        el, er, _ = eye_mouth_centres(detect_landmarks(np.asarray(out), cfg))
        assert abs(el[1] - er[1]) < 2, (el, er)
    small = align_face(img, replace(cfg, output_size=64)).image
    assert small.size == (64, 64)


@needs_dlib
def test_dlib_no_face():
    from stylenada.invert import align_face

    ramp = np.repeat(np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None], 200, 0).repeat(3, 2)
    with pytest.raises(StylenadaError, match="no face found"):
        align_face(ramp)


# --- editing ------------------------------------------------------------------------------------------------------


def adapted_copy(G: Generator, seed: int = 1) -> Generator:
    """A stand-in for a NADA-adapted generator: same mapping, perturbed synthesis weights."""
    A = tiny_g()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in A.synthesis.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return A


def make_run(tmp_path: Path, source: Path, G: Generator, name: str) -> Path:
    run_dir = tmp_path / name
    run_dir.mkdir()
    save_generator(G, run_dir / "generator.safetensors")
    (run_dir / "config.json").write_text(json.dumps({"generator": str(source)}))
    return run_dir


def test_edit_api_renders_the_same_latent(tiny_encoder):
    G, A = tiny_g(), adapted_copy(tiny_g())
    x = g_image(G)
    out = edit(x, [G, A], tiny_encoder)
    ws = tiny_encoder(x)
    assert out.shape == (3, 3, 32, 32)
    assert torch.allclose(out[0], x) and torch.allclose(out[2], A.synthesis(ws).clamp(-1, 1)[0], atol=1e-5)


def test_edit_command(tmp_path, capsys):
    G = tiny_g()
    src = save_generator(G, tmp_path / "ffhq.safetensors")
    runs = [make_run(tmp_path, src, adapted_copy(G, s), f"style{s}") for s in (1, 2)]
    photos = tmp_path / "photos"
    photos.mkdir()
    save_png(g_image(G, 5), photos / "a.png")
    save_png(g_image(G, 6), photos / "b.png")
    (photos / "broken.png").write_text("not an image")
    code, out, err = run(capsys, "edit", photos, "--generator", runs[0], "--generator", runs[1], "--no-align",
                         "--steps", "20", "--out", tmp_path / "grid.png", "--outdir", tmp_path / "each")
    assert code == 1 and "1 of 3 images were skipped" in err  # the others are written, the run says so
    assert "skipped" in out and "broken.png" in out and "PSNR" in out
    assert Image.open(tmp_path / "grid.png").size == (4 * 34 + 2, 2 * 34 + 2)  # input, source, 2 adapted
    names = sorted(p.name for p in (tmp_path / "each").iterdir())
    assert names == sorted(f"{s}_{k}" for s in "ab" for k in ("input.png", "source.png", "style1.png",
                                                                 "style2.png", "ws.pt"))
    assert torch.load(tmp_path / "each" / "a_ws.pt", weights_only=True).shape == (1, 8, 32)
    code, _, err = run(capsys, "edit", photos / "a.png", "--generator", runs[0], "--no-align", "--steps", "2",
                       "--out", tmp_path / "grid.png")
    assert code == 1 and "exists" in err and "--force" in err


def test_edit_command_with_encoder_and_its_decoder(tiny_encoder, tmp_path, capsys):
    G = tiny_g()
    enc = save_encoder(tiny_encoder, tmp_path / "e4e.pt", decoder=G)
    adapted = save_generator(adapted_copy(G), tmp_path / "sketch.pt")
    photo = save_png(g_image(G), tmp_path / "face.png")
    code, out, err = run(capsys, "edit", photo, "--generator", adapted, "--encoder", enc, "--no-align",
                         "--out", tmp_path / "grid.png")
    assert code == 0, err
    assert Image.open(tmp_path / "grid.png").size == (3 * 34 + 2, 34 + 2)
    code, _, err = run(capsys, "edit", photo, "--generator", adapted, "--encoder", enc, "--optimize", "--steps", "3",
                       "--no-align", "--out", tmp_path / "grid2.png")
    assert code == 0, err


def test_edit_command_errors(tiny_encoder, tmp_path, capsys):
    G = tiny_g()
    src = save_generator(G, tmp_path / "g.safetensors")
    photo = save_png(g_image(G), tmp_path / "face.png")
    (tmp_path / "notes.png").write_text("hello")
    big = save_encoder(random_encoder(replace(TINY_ENC, num_styles=18)), tmp_path / "big.pt")
    cases = [
        (("edit", tmp_path / "missing.png", "--generator", src, "--source", src), "image not found"),
        (("edit", tmp_path / "notes.png", "--generator", src, "--source", src, "--no-align"), "not an image file"),
        (("edit", photo, "--generator", src, "--encoder", src, "--no-align"), "not an encoder"),
        (("edit", photo, "--generator", src, "--source", src, "--encoder", big, "--no-align"), "1024px"),
        (("edit", photo, "--generator", src, "--no-align"), "--source"),
        (("edit", photo, "--generator", src, "--source", src, "--no-align", "--iterations", "2"), "--encoder"),
        (("edit", photo, "--generator", tmp_path, "--source", src, "--no-align"), "without generator.safetensors"),
        (("edit", photo, "--generator", src, "--source", src, "--landmarks", tmp_path / "x.dat"),
         "landmark model not found|dlib"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv, "--out", tmp_path / "o.png")
        assert code == 1 and err.strip().count("\n") == 0, (argv, err)
        assert any(m in err for m in message.split("|")), (message, err)


# --- training an encoder for any generator -------------------------------------------------------------


def test_train_encoder_learns_and_round_trips(tiny_generator, tmp_path):
    from stylenada.invert.train_encoder import EncoderTrainConfig, delta_regularizer, train_encoder

    cfg = EncoderTrainConfig(iters=40, batch=8, depths=(16, 16, 32, 32), input_size=32, log_every=1, lr=0.002)
    E, log = train_encoder(tiny_generator, cfg, out=tmp_path / "enc.pt", progress=False)
    first, last = sum(r["latent"] for r in log[:5]) / 5, sum(r["latent"] for r in log[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    loaded = load_encoder(tmp_path / "enc.pt")
    assert loaded.cfg == E.cfg and loaded.cfg.input_size == 32
    x = tiny_generator(torch.randn(3, tiny_generator.z_dim), noise_mode="const")
    assert torch.allclose(loaded(x), E(x), atol=1e-5)
    ws = torch.randn(2, 5, 4)
    assert delta_regularizer(ws[:, :1].expand(-1, 5, -1)) == 0 and delta_regularizer(ws) > 0


def test_shapes_inversion_metrics_are_shares(tiny_generator):
    from stylenada.invert.train_encoder import EncoderTrainConfig, train_encoder
    from stylenada.toy.reader import load_reader
    from stylenada.toy.tasks import inversion_metrics

    E, _ = train_encoder(tiny_generator, EncoderTrainConfig(iters=2, batch=4, depths=(16, 16, 32, 32)), progress=False)
    m = inversion_metrics(E, tiny_generator, load_reader(), adapted={"colour": tiny_generator}, n=16)
    assert 0 <= m["all_attributes_kept"] <= 1 and m["psnr"] > 0
    assert set(m["attribute_agreement"]) >= {"shape", "colour", "style", "position", "size"}
    assert 0 <= m["carried"]["colour"]["target_success"] <= 1
