"""Checkpoint formats: round trips, architecture inference, safety, and clear errors."""

import argparse
import os
import pickle

import pytest
import torch

from stylenada.errors import CheckpointError, UnsafePickleError
from stylenada.formats import inspect_checkpoint, load_generator, save_generator
from stylenada.formats.rosinality import from_native
from stylenada.models.stylegan2 import Generator, GeneratorConfig


def outputs(G, seed=0, psi=0.7):
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G(z, truncation_psi=psi)


@pytest.mark.parametrize("fmt", sorted(__import__("stylenada.formats", fromlist=["w"]).writable_formats()))
def test_roundtrip_is_exact(tiny_generator, tmp_path, fmt):
    """Every writable format of the registry: exact round trip, and a truncated file is one clear error."""
    from stylenada.formats import FORMATS

    path = save_generator(tiny_generator, tmp_path / f"g{FORMATS[fmt].suffix}", fmt)
    cut = tmp_path / f"cut{FORMATS[fmt].suffix}"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CheckpointError) as e:
        load_generator(cut)
    assert "\n" not in str(e.value) and str(cut) in str(e.value)
    G2 = load_generator(path)
    assert G2.cfg == tiny_generator.cfg
    assert torch.equal(outputs(G2), outputs(tiny_generator))
    assert torch.equal(G2.w_avg, tiny_generator.w_avg)


def test_native_to_rosinality_to_native(tiny_generator, tmp_path):
    save_generator(tiny_generator, tmp_path / "a.pt")
    G = load_generator(tmp_path / "a.pt")
    save_generator(G, tmp_path / "b.safetensors")
    G2 = load_generator(tmp_path / "b.safetensors")
    assert torch.equal(outputs(G2), outputs(tiny_generator))


@pytest.mark.parametrize("lr_mul", [1.0, 0.1, 0.01])
def test_rosinality_round_trip_keeps_any_mapping_lr_mul(tmp_path, lr_mul):
    """The format stores no lr multiplier and is read with 0.01: the writer rescales the mapping, so a
    generator with another multiplier renders the same after native -> .pt -> native (before: every z
    gave the same image)."""
    from conftest import randomize_generator

    torch.manual_seed(1)
    cfg = GeneratorConfig(resolution=16, z_dim=16, w_dim=16, mapping_layers=3, mapping_lr_mul=lr_mul,
                          channel_base=256, channel_max=16)
    G = randomize_generator(Generator(cfg)).eval()
    save_generator(G, tmp_path / "g.pt")
    G2 = load_generator(tmp_path / "g.pt")
    save_generator(G2, tmp_path / "g2.safetensors")
    G3 = load_generator(tmp_path / "g2.safetensors")
    for other in (G2, G3):
        torch.testing.assert_close(outputs(other), outputs(G), atol=1e-5, rtol=0)
        z = torch.randn(8, 16, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            assert other.mapping(z).std(dim=0).mean() > 1e-3  # different z, different w


def test_shipped_shapes_generator_survives_rosinality(tmp_path):
    from stylenada.toy.demo import GENERATOR

    G = load_generator(GENERATOR)
    save_generator(G, tmp_path / "g.pt")
    back = load_generator(tmp_path / "g.pt")
    torch.testing.assert_close(outputs(back), outputs(G), atol=1e-5, rtol=0)


def test_rosinality_refuses_what_it_cannot_hold(tmp_path):
    cfg = GeneratorConfig(resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=256, channel_max=16,
                          img_channels=1)
    with pytest.raises(CheckpointError, match="RGB generators"):
        save_generator(Generator(cfg), tmp_path / "g.pt")
    assert not (tmp_path / "g.pt").exists()


def test_rosinality_keys_and_shapes(tiny_generator):
    sd = from_native(tiny_generator.state_dict(), tiny_generator.cfg)
    assert sd["input.input"].shape == (1, 16, 4, 4)
    assert sd["conv1.conv.weight"].shape == (1, 16, 16, 3, 3)
    assert sd["to_rgb1.bias"].shape == (1, 3, 1, 1)
    assert sd["convs.0.conv.blur.kernel"].shape == (4, 4)
    assert sd["noises.noise_0"].shape == (1, 1, 4, 4) and sd["noises.noise_6"].shape == (1, 1, 32, 32)
    assert "style.2.weight" in sd and "style.3.weight" not in sd
    assert sd["convs.5.noise.weight"].shape == (1,)


@pytest.mark.parametrize("cfg", [
    GeneratorConfig(resolution=64, z_dim=16, w_dim=24, mapping_layers=3, channel_base=1024, channel_max=32),
    GeneratorConfig(resolution=32, z_dim=8, w_dim=8, mapping_layers=1, channel_base=256, channel_max=64),
])
def test_architecture_is_inferred(cfg, tmp_path):
    torch.manual_seed(1)
    G = Generator(cfg)
    for name in ("g.pt", "g.safetensors"):
        save_generator(G, tmp_path / name)
        info = inspect_checkpoint(tmp_path / name)
        assert info.config == cfg
        assert info.num_params == sum(p.numel() for p in G.parameters())


def test_rosinality_training_checkpoint_with_args(tiny_generator, tmp_path):
    """Training checkpoints carry an argparse.Namespace; it is allowed, and nothing else is."""
    sd = from_native(tiny_generator.state_dict(), tiny_generator.cfg)
    ckpt = {"g": sd, "g_ema": sd, "args": argparse.Namespace(size=32, batch=4), "g_optim": {"state": {}}}
    torch.save(ckpt, tmp_path / "train.pt")
    G = load_generator(tmp_path / "train.pt")  # no latent_avg: estimated
    assert torch.isfinite(G.w_avg).all() and G.w_avg.abs().sum() > 0


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_torch_file_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"g_ema": {"x": torch.zeros(1)}, "evil": Exploit(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_generator(tmp_path / "evil.pt")
    assert not marker.exists()


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"G_ema": Exploit(marker)}, f)
    with pytest.raises(UnsafePickleError, match="posix.system|os.system|nt.system"):
        load_generator(tmp_path / "evil.pkl")
    assert not marker.exists()
    # Plain pickle would have run the command: the test's payload is real.
    with open(tmp_path / "evil.pkl", "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_pickle_without_g_ema(tmp_path):
    with open(tmp_path / "x.pkl", "wb") as f:
        pickle.dump({"D": 1}, f)
    with pytest.raises(CheckpointError, match="no 'G_ema'"):
        load_generator(tmp_path / "x.pkl")


@pytest.mark.parametrize("name", ["g.safetensors", "g.pt"])
def test_truncated_and_corrupt_files(tiny_generator, tmp_path, name):
    path = save_generator(tiny_generator, tmp_path / name)
    data = path.read_bytes()
    for bad in (data[: len(data) // 2], data[:5], b"\x00" * 100):
        p = tmp_path / f"bad_{len(bad)}{path.suffix}"
        p.write_bytes(bad)
        with pytest.raises(CheckpointError) as e:
            load_generator(p)
        assert str(p) in str(e.value)
        assert "\n" not in str(e.value)


def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_generator(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_generator(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="folder"):
        load_generator(tmp_path)


def test_mismatched_shapes_give_clear_error(tiny_generator, tmp_path):
    sd = from_native(tiny_generator.state_dict(), tiny_generator.cfg)
    sd["convs.3.conv.weight"] = torch.zeros(1, 16, 8, 3, 3)  # wrong in-channels for its resolution
    torch.save({"g_ema": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"convs\.3|b16\.conv1"):
        load_generator(tmp_path / "bad.pt")
    sd = from_native(tiny_generator.state_dict(), tiny_generator.cfg)
    del sd["to_rgbs.1.conv.weight"]
    torch.save({"g_ema": sd}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="to_rgbs.1"):
        load_generator(tmp_path / "missing.pt")


def test_nan_weights_are_rejected(tiny_generator, tmp_path):
    sd = from_native(tiny_generator.state_dict(), tiny_generator.cfg)
    sd["style.1.weight"][0, 0] = float("nan")
    torch.save({"g_ema": sd}, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN"):
        load_generator(tmp_path / "nan.pt")


def test_encoder_checkpoint_is_named(tmp_path):
    torch.save({"state_dict": {"encoder.x": torch.zeros(1)}, "opts": {}}, tmp_path / "e4e.pt")
    with pytest.raises(CheckpointError, match="encoder"):
        load_generator(tmp_path / "e4e.pt")


def test_save_is_atomic_and_leaves_no_temp(tiny_generator, tmp_path):
    save_generator(tiny_generator, tmp_path / "g.safetensors")
    save_generator(tiny_generator, tmp_path / "g.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.safetensors"]
    with pytest.raises(CheckpointError, match="output format"):
        save_generator(tiny_generator, tmp_path / "g.bin")


def test_saved_files_get_normal_permissions(tiny_generator, tmp_path):
    import stat

    mask = os.umask(0o022)
    try:
        path = save_generator(tiny_generator, tmp_path / "g.safetensors")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def _rewrite_meta(src, dst, change):
    """Copy a native file with its stylenada metadata changed by ``change(meta) -> meta``."""
    import json

    from safetensors.torch import load_file, save_file

    from stylenada.formats.native import META_KEY, read_metadata

    meta = change(read_metadata(src))
    save_file(load_file(str(src)), str(dst), metadata={META_KEY: json.dumps(meta)})
    return dst


def test_native_metadata_records_family_and_is_checked(tiny_generator, tmp_path):
    from stylenada.formats.native import FORMAT_VERSION, read_metadata

    src = save_generator(tiny_generator, tmp_path / "g.safetensors")
    meta = read_metadata(src)
    assert meta["family"] == "stylegan2" and meta["version"] == FORMAT_VERSION and meta["stylenada"]
    # A file written before families existed (version 1, no family key) still loads, as StyleGAN2.
    old = _rewrite_meta(src, tmp_path / "old.safetensors",
                        lambda m: {k: v for k, v in m.items() if k not in ("family", "stylenada")} | {"version": 1})
    assert torch.equal(outputs(load_generator(old)), outputs(tiny_generator))
    for name, change, words in [
        ("family", lambda m: m | {"family": "stylegan9"}, "unknown generator family 'stylegan9'"),
        ("newer", lambda m: m | {"version": FORMAT_VERSION + 1}, "newer stylenada"),
        ("key", lambda m: m | {"config": m["config"] | {"warp": 3}}, "bad stylegan2 config"),
    ]:
        bad = _rewrite_meta(src, tmp_path / f"{name}.safetensors", change)
        with pytest.raises(CheckpointError, match=words) as e:
            load_generator(bad)
        assert "\n" not in str(e.value) and str(bad) in str(e.value)


def test_load_in_another_dtype(tiny_generator, tmp_path):
    src = save_generator(tiny_generator, tmp_path / "g.safetensors")
    G = load_generator(src, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in G.parameters())


def _fuzzer():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "fuzz_checkpoints.py"
    spec = importlib.util.spec_from_file_location("fuzz_checkpoints", path)
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    return fuzz


def test_fuzzed_checkpoints_load_or_fail_in_one_line(tmp_path, caplog):
    """300 seeded mutants of the three formats (benchmarks/fuzz_checkpoints.py; the full run is 1,200):
    each loads and renders finite images, or is refused by one CheckpointError line naming the file."""
    fuzz = _fuzzer()
    res = fuzz.run(seed=1, n=300, out=tmp_path / "m")
    assert res["findings"] == []
    counts = {fmt: sum(c.values()) for fmt, c in res["counts"].items()}
    assert sum(counts.values()) == 300 and min(counts[f] for f in ("native", "rosinality", "nvidia")) >= 50
    assert all(c.get("refused", 0) > 0 for c in res["counts"].values())  # the mutants are really broken


def test_info_never_prints_a_traceback_on_broken_files(tmp_path, capsys):
    from stylenada.cli import main

    fuzz = _fuzzer()
    for _, _, path in fuzz.mutants(seed=2, n=40, out=tmp_path / "m"):
        code = main(["info", str(path)])
        out = capsys.readouterr()
        assert code in (0, 1), path
        assert "Traceback" not in out.err + out.out
        if code == 1:
            assert len(out.err.strip().splitlines()) == 1 and str(path) in out.err


def test_config_metadata_is_checked_with_bounds(tiny_generator, tmp_path):
    """Metadata values a corrupt file may carry are refused in one line before anything is built."""
    import json as _json
    import struct

    path = save_generator(tiny_generator, tmp_path / "g.safetensors")
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = _json.loads(data[8:8 + n])
    meta = _json.loads(header["__metadata__"]["stylenada"])
    for field, value in [("mapping_layers", 10**7), ("resolution", 48), ("conv_clamp", "x"),
                         ("mapping_lr_mul", float("nan")), ("resample_filter", [1e300]), ("channel_base", 0),
                         ("z_dim", True)]:
        bad = {**meta, "config": {**meta["config"], field: value}}
        raw = _json.dumps({**header, "__metadata__": {"stylenada": _json.dumps(bad)}}).encode()
        out = tmp_path / f"{field}.safetensors"
        out.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
        with pytest.raises(CheckpointError, match=field) as e:
            load_generator(out)
        assert str(out) in str(e.value) and "\n" not in str(e.value)


def test_a_flipped_weight_byte_in_a_native_file_is_refused(tiny_generator, tmp_path):
    path = save_generator(tiny_generator, tmp_path / "g.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # a low mantissa bit of the last weight: a finite value, only the checksum sees it
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_generator(path)


def test_format_is_read_from_the_content_not_the_name(tmp_path, capsys):
    """A rosinality .pt renamed .safetensors still loads (torch.load would dispatch on the name); the
    2-byte pickle header is one line."""
    from pathlib import Path

    from stylenada.cli import main

    src = Path(__file__).parent / "data" / "golden" / "rosinality_tiny.pt"
    renamed = tmp_path / "g.safetensors"
    renamed.write_bytes(src.read_bytes())
    assert load_generator(renamed).source_format == "rosinality"
    two = tmp_path / "two.pt"
    two.write_bytes(b"\x80\x04")
    assert main(["info", str(two)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(two) in err
