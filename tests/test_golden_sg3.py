"""StyleGAN3 exactness against NVlabs/stylegan3 on tiny random networks it built and pickled, and the safety
of loading such pickles.

tests/data/golden/README.md says how each file was made. Outputs must agree to 1e-4 (max abs).
"""

import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from stylenada.errors import CheckpointError, UnsafePickleError
from stylenada.formats import inspect_checkpoint, load_generator
from stylenada.formats.nvidia import PersistentObject, safe_load_pickle
from stylenada.models.stylegan3 import Generator, SynthesisLayer

GOLDEN = Path(__file__).parent / "data" / "golden"
CASES = ["sg3t_tiny16", "sg3t_tiny64", "sg3r_tiny16", "sg3r_tiny64"]
PSIS = [("img_psi1", "ws", 1.0), ("img_psi07", "ws_psi07", 0.7), ("img_psi05", "ws_psi05", 0.5)]


@pytest.fixture(scope="module")
def generators():
    return {name: load_generator(GOLDEN / f"{name}.pkl") for name in CASES}


@pytest.mark.parametrize("name", CASES)
def test_images_match_reference(generators, name):
    ref = np.load(GOLDEN / f"{name}.npz")
    G = generators[name]
    z = torch.from_numpy(ref["z"])
    with torch.no_grad():
        for img_key, ws_key, psi in PSIS:
            np.testing.assert_allclose(G.mapping(z, truncation_psi=psi).numpy(), ref[ws_key], atol=1e-5, rtol=0)
            for noise_mode in ("const", "random"):  # StyleGAN3 has no noise: every mode gives the same image
                out = G(z, truncation_psi=psi, noise_mode=noise_mode).numpy()
                assert np.abs(out - ref[img_key]).max() <= 1e-4, (name, img_key, noise_mode)


@pytest.mark.parametrize("name,config,clamp", [("sg3t_tiny16", "T", 256.0), ("sg3t_tiny64", "T", 2.0),
                                               ("sg3r_tiny16", "R", None), ("sg3r_tiny64", "R", 256.0)])
def test_config_is_read(name, config, clamp):
    """The architecture comes from the constructor arguments (NVIDIA's defaults where the file has none:
    conv_clamp 256) and the tensors; R doubles the channels."""
    info = inspect_checkpoint(GOLDEN / f"{name}.pkl")
    cfg = info.config
    assert info.format == "nvidia" and info.family == "stylegan3"
    assert cfg.config_name == config and cfg.conv_clamp == clamp and cfg.num_ws == 16
    assert cfg.resolution == int(name[-2:]) and cfg.mapping_layers == 2
    assert cfg.channel_base == (2 if config == "R" else 1) * (128 if name.endswith("16") else 256)


@pytest.mark.parametrize("name", ["sg3t_tiny64", "sg3r_tiny64"])
def test_designed_filters_equal_the_reference(generators, name):
    """Our Kaiser-sinc and jinc filters (numpy/torch, no scipy) equal the ones NVIDIA designed with scipy and
    stored in the pickle; so does every layer's geometry (sizes, sampling rates, padding)."""
    G = generators[name]
    fresh = Generator(G.cfg)
    n = 0
    for (key, value), (key2, value2) in zip(G.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert key == key2
        if key.endswith("_filter"):
            torch.testing.assert_close(value2, value, atol=1e-7, rtol=0)
            n += 1
    assert n >= 20
    radial = [m.down_filter.ndim == 2 for m in G.synthesis.layers() if m.down_filter is not None]
    assert any(radial) == (G.cfg.config_name == "R")


def test_full_snapshot_loads_only_g_ema():
    data = safe_load_pickle(GOLDEN / "sg3t_tiny16.pkl")
    assert set(data) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    assert isinstance(data["G"], PersistentObject) and data["G_ema"].module_src.startswith("# source omitted")
    G = load_generator(GOLDEN / "sg3t_tiny16.pkl")
    assert isinstance(G, Generator) and isinstance(G.synthesis.L14_16_3, SynthesisLayer)
    torch.testing.assert_close(G.mapping.fc0.weight, data["G_ema"].named_tensors()["mapping.fc0.weight"])


# --- Re-pickled snapshots: hostile ones posing as StyleGAN3, and other argument layouts ---------------------


class _Persistent:
    """Pickles as NVIDIA's persistence does: a call of torch_utils.persistence._reconstruct_persistent_obj."""

    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (self.meta,)


class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _repickled(obj, source: str, inject=None):
    """A PersistentObject tree made picklable again as NVIDIA's persistence writes it, with ``source`` as every
    module's source text and, when given, ``inject`` placed in the state of each ``SynthesisInput`` (a
    StyleGAN3 class)."""
    if isinstance(obj, PersistentObject):
        state = {k: _repickled(v, source, inject) for k, v in obj.state.items()}
        if inject is not None and obj.class_name == "SynthesisInput":
            state["payload"] = inject
        return _Persistent({"type": "class", "version": 6, "module_src": source, "class_name": obj.class_name,
                            "state": state})
    if isinstance(obj, dict):  # OrderedDicts stay ordered; our EasyDict stand-in becomes a plain dict
        kind = OrderedDict if isinstance(obj, OrderedDict) else dict
        return kind((k, _repickled(v, source, inject)) for k, v in obj.items())
    return obj


def _persistence_module(monkeypatch):
    fake = types.ModuleType("torch_utils.persistence")
    fake._reconstruct_persistent_obj = _reconstruct_persistent_obj
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", fake)


def _reconstruct_persistent_obj(meta):
    return meta  # stands in for NVIDIA's (which would exec meta["module_src"]), to pickle by reference


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    """Write sg3t_tiny16's G_ema as a snapshot whose module source and, optionally, state carry a payload that
    creates the marker file. Returns (write(name, inject) -> path, marker)."""
    marker = tmp_path / "pwned"
    _persistence_module(monkeypatch)
    G_ema = safe_load_pickle(GOLDEN / "sg3t_tiny16.pkl")["G_ema"]
    source = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nclass Generator: pass\n"

    def write(name, inject=None):
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"G_ema": _repickled(G_ema, source, inject), "augment_pipe": None}))
        return path

    return write, marker


def test_stylegan3_module_source_is_never_run(hostile):
    """NVIDIA's loader executes each persistent object's module source; we keep it as a string: a file
    whose source would create the marker loads as data, and the marker never appears."""
    write, marker = hostile
    G = load_generator(write("source.pkl"))
    assert G.family == "stylegan3" and not marker.exists()
    exec(compile(safe_load_pickle(write("again.pkl"))["G_ema"].module_src, "payload", "exec"), {})
    assert marker.exists()  # the payload is real


@pytest.mark.parametrize("payload,words", [
    ("system", "posix.system|os.system|nt.system"),
    ("exec", "builtins.exec"),
    ("eval", "builtins.eval"),
])
def test_hostile_stylegan3_pickle_is_refused_in_one_line(hostile, payload, words):
    import builtins
    import os

    write, marker = hostile
    if payload == "system":
        inject = _Call(os.system, f"touch {marker}")
    else:
        code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
        inject = _Call(getattr(builtins, payload), code)
    path = write(f"{payload}.pkl", inject)
    with pytest.raises(UnsafePickleError, match=words) as e:
        load_generator(path)
    msg = str(e.value)
    assert isinstance(e.value, CheckpointError) and "\n" not in msg and str(path) in msg and "refused" in msg
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # plain pickle would have run it: the test's payload is real
    assert marker.exists()


@pytest.mark.parametrize("clamp", ["absent", None, 0.5])
def test_stylegan2_pickles_of_the_stylegan3_repository(tmp_path, monkeypatch, clamp):
    """stylegan3's StyleGAN2 generator takes the synthesis arguments flattened (stylegan2-ada nests them in
    ``synthesis_kwargs``), and its blocks clamp at 256 by default (stylegan2-ada's do not): both are read."""
    _persistence_module(monkeypatch)
    G_ema = safe_load_pickle(GOLDEN / "nvidia_tiny.pkl")["G_ema"]
    kw = dict(G_ema.state["_init_kwargs"])
    syn = {k: v for k, v in kw.pop("synthesis_kwargs").items() if k != "conv_clamp"}
    G_ema.state["_init_kwargs"] = {**kw, **syn, **({} if clamp == "absent" else {"conv_clamp": clamp})}
    path = tmp_path / "sg2.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _repickled(G_ema, "# source omitted")}))
    cfg = inspect_checkpoint(path).config
    assert cfg.conv_clamp == (256 if clamp == "absent" else clamp) and cfg.channel_base == 1024


def test_stylegan3_config_r_is_told_by_the_tensors(tmp_path, monkeypatch):
    """Without ``conv_kernel`` and ``use_radial_filters`` among the constructor arguments, config R is read
    from the weights' kernel size and the 2-D downsampling filters, and renders as the reference."""
    _persistence_module(monkeypatch)
    G_ema = safe_load_pickle(GOLDEN / "sg3r_tiny16.pkl")["G_ema"]
    G_ema.state["_init_kwargs"] = {k: v for k, v in G_ema.state["_init_kwargs"].items()
                                   if k not in ("conv_kernel", "use_radial_filters")}
    path = tmp_path / "r.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _repickled(G_ema, "# source omitted")}))
    G = load_generator(path)
    ref = np.load(GOLDEN / "sg3r_tiny16.npz")
    assert G.cfg.config_name == "R"
    with torch.no_grad():
        assert np.abs(G(torch.from_numpy(ref["z"])).numpy() - ref["img_psi1"]).max() <= 1e-4
