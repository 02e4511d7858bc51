"""Smoke runs of every command through main(argv), and their one-line errors."""

import json

import pytest
import torch
from PIL import Image

from stylenada.cli import main
from stylenada.formats import load_generator, save_generator


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info(tiny_generator, tmp_path, capsys):
    path = save_generator(tiny_generator, tmp_path / "g.pt")
    code, out, _ = run(capsys, "info", str(path))
    assert code == 0
    assert "rosinality" in out and "32x32" in out and "num_ws:          8" in out


def test_convert_and_generate(tiny_generator, tmp_path, capsys):
    src = save_generator(tiny_generator, tmp_path / "g.pt")
    dst = tmp_path / "g.safetensors"
    assert run(capsys, "convert", str(src), str(dst))[0] == 0
    assert torch.equal(load_generator(dst).state_dict()["synthesis.b4.const"], tiny_generator.synthesis.b4.const)
    code, _, err = run(capsys, "convert", str(src), str(dst))
    assert code == 1 and "exists" in err and "--force" in err
    code, _, _ = run(capsys, "generate", str(dst), "--seeds", "0-5", "--truncation", "0.7",
                     "--out", str(tmp_path / "grid.png"), "--outdir", str(tmp_path / "each"))
    assert code == 0
    assert Image.open(tmp_path / "grid.png").size == (3 * 34 + 2, 2 * 34 + 2)
    assert len(list((tmp_path / "each").glob("seed*.png"))) == 6
    a = Image.open(tmp_path / "each" / "seed0003.png").tobytes()
    run(capsys, "generate", str(dst), "--seeds", "3", "--outdir", str(tmp_path / "again"), "--truncation", "0.7")
    assert Image.open(tmp_path / "again" / "seed0003.png").tobytes() == a  # a seed always gives the same image


def test_errors_are_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "info", str(tmp_path / "missing.pt"))
    assert code == 1 and err.strip().count("\n") == 0 and "not found" in err
    (tmp_path / "junk.pt").write_bytes(b"junk" * 10)
    code, _, err = run(capsys, "generate", str(tmp_path / "junk.pt"))
    assert code == 1 and err.strip().count("\n") == 0
    code, _, err = run(capsys, "generate", str(tmp_path / "junk.pt"), "--seeds", "5-1")
    assert code == 1 and "seed" in err


def test_random_generator(tmp_path, capsys):
    code, out, _ = run(capsys, "random-generator", str(tmp_path / "r.safetensors"), "--resolution", "32",
                       "--channel-multiplier", "1")
    assert code == 0 and load_generator(tmp_path / "r.safetensors").resolution == 32
    code, _, err = run(capsys, "random-generator", str(tmp_path / "q.safetensors"), "--resolution", "100")
    assert code == 1 and "power of two" in err


def test_train_and_resume_commands(tiny_generator, tmp_path, capsys, random_clip):
    from conftest import save_test_clip

    spec = save_test_clip(random_clip, tmp_path)
    gen = save_generator(tiny_generator, tmp_path / "g.pt")
    out = tmp_path / "run"
    common = ["--clip", spec, "--templates", "single", "--no-tensorboard", "--sample-every", "0"]
    code, stdout, err = run(capsys, "train", "--generator", str(gen), "--source", "photo", "--target", "sketch",
                            "--iters", "2", "--batch", "2", "--w-batch", "2", "--out", str(out), *common)
    assert code == 0, err
    assert "CLIP loss" in stdout and (out / "generator.safetensors").exists()
    code, stdout, err = run(capsys, "train", "--resume", str(out), "--iters", "3")
    assert code == 0, err
    assert "3 steps" in stdout
    # YAML config, overridden on the command line.
    (tmp_path / "run.yaml").write_text(f"generator: {gen}\nsource: photo\ntarget: sketch\niters: 1\nbatch: 2\n"
                                       f"layers: all\nout: {tmp_path / 'yaml'}\n")
    code, stdout, err = run(capsys, "train", "--config", str(tmp_path / "run.yaml"), "--target", "painting", *common)
    assert code == 0, err
    assert '"target": "painting"' in (tmp_path / "yaml" / "config.json").read_text()


def test_train_errors(tiny_generator, tmp_path, capsys):
    gen = save_generator(tiny_generator, tmp_path / "g.pt")
    for args, msg in [
        (["--generator", str(gen), "--source", "photo", "--target", ""], "empty target"),
        (["--generator", str(gen), "--source", "photo", "--target", "photo"], "identical"),
        (["--generator", str(tmp_path / "nope.pt"), "--source", "a", "--target", "b"], "not found"),
        (["--generator", str(gen), "--target", "x", "--clip", "NoSuchModel-B-99:openai"], "NoSuchModel"),
        (["--config", str(tmp_path / "missing.yaml")], "config file not found"),
    ]:
        code, _, err = run(capsys, "train", "--out", str(tmp_path / "e"), *args)
        assert code != 0 and msg in err, (args, err)
        assert err.strip().count("\n") == 0, err
    code, _, err = run(capsys, "train", "--layers", "bogus")
    assert code == 2 and "bogus" in err


def test_readme_python_snippet_runs(tmp_path, monkeypatch, tiny_generator, random_clip):
    """The README's Python API block, as written, with its checkpoint a tiny random generator, its CLIP a tiny
    random one and 2 steps instead of 300 (the only substitutions)."""
    import re
    from pathlib import Path

    from conftest import save_test_clip

    import stylenada

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## Python API", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    stylenada.save_generator(tiny_generator, tmp_path / "stylegan2-ffhq-config-f.pt")
    spec = save_test_clip(random_clip, tmp_path)
    code = block.replace('"ViT-B-32:openai"', repr(spec))
    code = re.sub(r"iters=300", "iters=2", code).replace("iters=600", "iters=3")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert isinstance(namespace["adapted"], stylenada.Generator)
    assert (tmp_path / "runs" / "sketch" / "generator.safetensors").exists()
    assert {"train", "resume", "TrainConfig", "SelectionConfig", "load_generator"} <= set(dir(stylenada))


def test_python_dash_m_runs_the_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "stylenada", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "demo" in out.stdout


def test_yaml_takes_the_command_line_spellings_and_checks_types(tiny_generator, tmp_path, capsys, random_clip,
                                                              monkeypatch):
    from conftest import save_test_clip

    spec = save_test_clip(random_clip, tmp_path)
    monkeypatch.chdir(tmp_path)
    save_generator(tiny_generator, tmp_path / "g.pt")
    (tmp_path / "run.yaml").write_text(f"generator: g.pt\nsource: photo\ntarget: sketch\niters: 1\nbatch: 2\n"
                                       f"k: 2\nsample-every: 0\nw-batch: 2\nclip: {spec}\ntemplates: single\n"
                                       "out: rel\ntensorboard: false\n")
    code, _, err = run(capsys, "train", "--config", "run.yaml")
    assert code == 0, err
    cfg = json.loads((tmp_path / "rel" / "config.json").read_text())
    assert cfg["selection"]["k"] == 2 and cfg["sample_every"] == 0
    assert cfg["generator"] == str(tmp_path / "g.pt")  # absolute: the run works from any directory
    monkeypatch.chdir(tmp_path.parent)
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "rel"), "--iters", "2")
    assert code == 0, err
    (tmp_path / "bad.yaml").write_text("generator: g.pt\ntarget: x\niters: ten\n")
    code, _, err = run(capsys, "train", "--config", str(tmp_path / "bad.yaml"))
    assert code == 1 and err.strip().count("\n") == 0 and "--iters: expected a whole number" in err


def test_writers_refuse_to_overwrite_and_bad_outputs_fail_early(tiny_generator, tmp_path, capsys):
    gen = save_generator(tiny_generator, tmp_path / "g.safetensors")
    grid = tmp_path / "grid.png"
    assert run(capsys, "generate", str(gen), "--seeds", "0-1", "--out", str(grid))[0] == 0
    before = grid.read_bytes()
    for args, code_want, words in [
        (["--seeds", "0-1", "--out", str(grid)], 1, "pass --force"),
        (["--seeds", "0-5000", "--out", str(tmp_path / "big.png")], 1, "too large a grid"),
        (["--seeds", "0-1", "--out", str(grid / "x.png")], 1, "is a file, not a folder"),
        (["--seeds", "0-1", "--batch", "0", "--out", str(tmp_path / "b.png")], 2, "batch"),
        (["--seeds", "0-1", "--device", "cuda:7", "--out", str(tmp_path / "c.png")], 1, "--device"),
    ]:
        code, _, err = run(capsys, "generate", str(gen), *args)
        assert code == code_want and words in err and len([ln for ln in err.splitlines() if ln.strip()]) <= 3, err
    assert grid.read_bytes() == before  # nothing the user had is touched
    assert run(capsys, "generate", str(gen), "--seeds", "2-3", "--out", str(grid), "--force")[0] == 0
    assert grid.read_bytes() != before


def test_info_on_a_clip_file_says_it_is_not_a_generator(capsys):
    from pathlib import Path

    clip = Path(__file__).parents[1] / "stylenada" / "toy" / "weights" / "tiny_clip.safetensors"
    code, _, err = run(capsys, "info", str(clip))
    assert code == 1 and "not a generator checkpoint" in err and "convert" not in err


def test_train_reports_bad_paths_before_loading_anything(tiny_generator, tmp_path, capsys):
    gen = save_generator(tiny_generator, tmp_path / "g.pt")
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a.png")
    guided = ["--target-images", str(tmp_path / "imgs"), "--target", ""]
    for args, words in [(["--target", "x", "--out", str(tmp_path / "file" / "run")], "cannot create the run folder"),
                        (["--target-images", str(tmp_path / "nope"), "--target", ""], "target image folder not found"),
                        (["--target-images", str(tmp_path / "empty"), "--target", ""], "no images"),
                        # terms that read the target text are refused in image-guided mode, not trained as 0
                        ([*guided, "--lambda", "classify=3"], "classify loss term(s) compare images with the target "
                                                              "text, which image-guided mode (--target-images) has "
                                                              "none of: drop them (--lambda classify=0)"),
                        ([*guided, "--lambda-global", "1"], "drop them (--lambda-global 0)")]:
        code, _, err = run(capsys, "train", "--generator", str(gen), "--clip", "NotLoaded-B-1:x", *args)
        assert code == 1 and words in err and err.strip().count("\n") == 0, (args, err)


def test_readme_shapes_world_train_recipe_runs(tmp_path, monkeypatch, capsys):
    """The README's shapes-world `stylenada train` command, as written, with 2 steps instead of 100."""
    import shlex
    from pathlib import Path

    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    block = readme.split("On the shapes world", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    argv = shlex.split(block.replace("\\\n", " "))
    assert argv[:2] == ["stylenada", "train"]
    argv = [a if a != "100" else "2" for a in argv[1:]]
    monkeypatch.chdir(root)
    argv[argv.index("--out") + 1] = str(tmp_path / "blue")
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert (tmp_path / "blue" / "generator.safetensors").exists()


def test_usage_mistakes_exit_2_and_bad_values_exit_1(capsys):
    code, _, err = run(capsys, "demo", "--layers", "bogus")
    assert code == 2 and "bogus" in err
    code, _, err = run(capsys, "generate", "missing.pt", "--seeds", "x-y")
    assert code == 1


def test_bad_command_lines_fail_in_one_line_and_touch_nothing(tiny_generator, tmp_path, capsys, monkeypatch):
    """The table of bad command lines: exit 1 (bad value) or 2 (usage), at most 3 lines, no traceback,
    and the user's existing files unchanged."""
    monkeypatch.chdir(tmp_path)
    gen = str(save_generator(tiny_generator, tmp_path / "g.pt"))
    (tmp_path / "file").write_text("x")
    kept = tmp_path / "mine.png"
    kept.write_bytes(b"precious")
    train = ["train", "--generator", gen, "--clip", "NotLoaded-B-1:x", "--source", "a", "--target", "b"]
    rows = [
        (["generate", str(tmp_path / "missing.pt")], 1, "not found"),
        (["generate", gen, "--batch", "0"], 2, "--batch"),
        (["generate", gen, "--truncation", "nan"], 2, "finite"),
        (["generate", gen, "--outdir", str(tmp_path / "file" / "sub")], 1, "is a file"),
        (["generate", gen, "--seeds", "0", "--out", str(kept)], 1, "--force"),
        (["generate", gen, "--seeds", "x-y"], 1, "seed list"),
        (["convert", gen, str(tmp_path / "file" / "x.pt")], 1, "is a file"),
        (["convert", gen, str(kept)], 1, "format"),
        (["info", str(tmp_path)], 1, "folder"),
        (["evaluate", str(tmp_path / "nowhere")], 1, "not found"),
        (["video", str(tmp_path / "nowhere"), "--fps", "inf"], 2, "finite"),
        ([*train, "--out", str(tmp_path / "file" / "run")], 1, "run folder"),
        ([*train, "--iters", "-1", "--out", str(tmp_path / "r")], 1, "--iters"),
        ([*train, "--lr", "nan", "--out", str(tmp_path / "r")], 1, "--lr"),
        (["train", "--generator", gen, "--source", " ", "--target", "b", "--out", str(tmp_path / "r")], 1, "source"),
        (["train", "--generator", str(tmp_path / "nope.pt"), "--source", "a", "--target", "b"], 1, "not found"),
        (["demo", "--layers", "bogus"], 2, "bogus"),
        (["demo", "--generator", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "r")], 1, "not found"),
    ]
    if not torch.cuda.is_available():
        rows.append((["generate", gen, "--device", "cuda"], 1, "no CUDA"))
    for argv, want_code, words in rows:
        code, out, err = run(capsys, *argv)
        assert code == want_code and words in err, (argv, code, err)
        assert "Traceback" not in out + err and len([x for x in err.splitlines() if x.strip()]) <= 3, (argv, err)
    assert kept.read_bytes() == b"precious" and (tmp_path / "file").read_text() == "x"
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before the first checkpoint", "after a checkpoint"])
def test_kill_9_then_resume_finishes_bit_exact(tmp_path, when):
    """`stylenada train` killed with SIGKILL (no chance to clean up), then `--resume`: the run finishes,
    leaves no temporary file, and its generator equals an uninterrupted run's, bit for bit."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    gen = Path(__file__).parents[1] / "stylenada" / "toy" / "weights" / "shapes_gan.safetensors"
    base = [sys.executable, "-m", "stylenada", "train", "--generator", str(gen), "--clip", "tiny-shapes",
            "--source", "a red shape", "--target", "a blue shape", "--templates", "none", "--iters", "30",
            "--batch", "2", "--layers", "all", "--lr", "0.003", "--sample-every", "0", "--checkpoint-every", "5",
            "--device", "cpu", "--no-tensorboard"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*base, "--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)
    run = tmp_path / "cut"
    proc = subprocess.Popen([*base, "--out", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = (lambda: (run / "config.json").exists()) if when.startswith("before") else \
        (lambda: (run / "checkpoints" / "latest.json").exists())
    while not ready() and proc.poll() is None:  # wait for the moment to kill, not for a fixed time
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "generator.safetensors").exists()
    done = subprocess.run([sys.executable, "-m", "stylenada", "train", "--resume", str(run)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]
    a, b = load_generator(tmp_path / "full" / "generator.safetensors"), load_generator(run / "generator.safetensors")
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), n


def test_ctrl_c_exits_130(tiny_generator, tmp_path, capsys, monkeypatch):
    """An interrupted command (Ctrl-C) exits 130 with one line, as shells expect, not 1 like a bad input."""
    import stylenada.formats as formats

    gen = save_generator(tiny_generator, tmp_path / "g.pt")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(formats, "load_generator", interrupted)
    code, _, err = run(capsys, "generate", str(gen), "--seeds", "0", "--out", str(tmp_path / "x.png"))
    assert code == 130 and err.strip() == "Aborted."
    assert not (tmp_path / "x.png").exists()
