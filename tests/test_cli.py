"""The ``avatarbot`` command line and the shipped default style.

The commands run in this process through ``bot.cli.main`` (what ``python -m bot`` calls), so each
test does not start TensorFlow again; the first test runs the real console command in its own
process, exit status and output streams included."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, in_process_cli


@pytest.fixture
def avatarbot(capsys):
    """Run ``avatarbot ARGS...`` in this process, as ``python -m bot`` does."""
    from bot.cli import main

    return in_process_cli(capsys, main, "avatarbot")


def test_generate_writes_a_png_whose_metadata_names_its_seed(tiny_style, tmp_path):
    from gan.imaging import read_png_metadata

    out = tmp_path / "a.png"
    res = subprocess.run([sys.executable, "-m", "bot", "generate", "--seed", "42", "--size", "128", "--weights-dir",
                          str(tiny_style), "-o", str(out)], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "seed 42" in res.stdout
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (128, 128) and im.mode == "RGB"
    meta = read_png_metadata(out.read_bytes())
    assert meta["seed"] == "42" and meta["style"] == "default" and meta["size"] == "128"
    bad = subprocess.run([sys.executable, "-m", "bot", "frobnicate"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and "Traceback" not in bad.stderr


def test_name_grid_morph_and_styles(avatarbot, tiny_style, tmp_path):
    from gan.latents import seed_for_name

    res = avatarbot("generate", "--name", "Alice", "--weights-dir", str(tiny_style), "-o", str(tmp_path / "n.png"))
    assert res.returncode == 0 and f"seed {seed_for_name('Alice')}" in res.stdout
    res = avatarbot("grid", "--seeds", "1-6", "--cols", "3", "--cell", "64", "--weights-dir", str(tiny_style),
                    "-o", str(tmp_path / "g.png"))
    assert res.returncode == 0, res.stderr
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (3 * 64 + 4 * 2, 2 * 64 + 3 * 2)
    res = avatarbot("morph", "--from", "1", "--to", "Bob", "--steps", "4", "--size", "64",
                    "--weights-dir", str(tiny_style), "-o", str(tmp_path / "m.gif"))
    assert res.returncode == 0, res.stderr
    with Image.open(tmp_path / "m.gif") as im:
        assert im.format == "GIF" and im.n_frames == 6
    res = avatarbot("styles", "--weights-dir", str(tiny_style))
    assert res.returncode == 0 and res.stdout.startswith("default")


def test_a_style_with_a_measured_truncation_draws_at_it_unless_told_otherwise(avatarbot, tiny_style, tmp_path):
    import json
    import shutil

    from gan.imaging import read_png_metadata

    weights = tmp_path / "weights"
    shutil.copytree(tiny_style, weights)
    meta_path = weights / "default" / "style.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "truncation": 0.5}))

    def draw(name, *extra):
        res = avatarbot("generate", "--seed", "3", "--size", "64", "--weights-dir", str(weights),
                        "-o", str(tmp_path / name), *extra)
        assert res.returncode == 0, res.stderr
        with Image.open(tmp_path / name) as im:
            return np.asarray(im), read_png_metadata((tmp_path / name).read_bytes())

    plain, meta = draw("plain.png")
    half, _ = draw("half.png", "--truncation", "0.5")
    full, full_meta = draw("full.png", "--truncation", "1")
    assert meta["truncation"] == "0.5" and full_meta["truncation"] == "1"
    assert np.array_equal(plain, half) and not np.array_equal(plain, full)


@pytest.mark.parametrize("args, message", [
    (["generate", "--seed", "-1"], "seed must be between"),
    (["generate", "--seed", str(2**63)], "seed must be between"),
    (["generate", "--seed", "abc"], "invalid int value"),
    (["generate", "--seed", "1", "--name", "x"], "not both"),
    (["generate", "--size", "4096"], "size must be"),
    (["generate", "--truncation", "3"], "truncation must be"),
    (["generate", "--style", "nope"], "unknown style 'nope'"),
    (["grid", "--seeds", "9-1"], "end is before the start"),
    (["grid", "--seeds", "1-1000"], "at most 64"),
    (["morph", "--from", "1"], "required"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_get_one_line_and_status_2(avatarbot, tiny_style, tmp_path, args, message):
    res = avatarbot(*args, "--weights-dir", str(tiny_style), "-o", str(tmp_path / "x.png")) \
        if args[0] in ("generate", "grid") else avatarbot(*args)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "x.png").exists()


def test_a_corrupt_style_is_one_clear_line(avatarbot, tiny_style, tmp_path):
    import shutil

    broken = tmp_path / "weights"
    shutil.copytree(tiny_style, broken)
    (broken / "default" / "generator.weights.h5").write_bytes(b"garbage")
    res = avatarbot("generate", "--seed", "1", "--weights-dir", str(broken), "-o", str(tmp_path / "x.png"))
    assert res.returncode == 2 and "does not match the sha256" in res.stderr and "Traceback" not in res.stderr


def test_shipped_default_style_loads_and_draws_distinct_faces():
    from gan.inference import AvatarGenerator

    gen = AvatarGenerator.load(REPO / "weights" / "default")
    assert (REPO / "weights" / "default" / "generator.weights.h5").stat().st_size <= 25 * 1024 * 1024
    faces = gen.generate(list(range(16)))
    assert faces.shape == (16, 64, 64, 3)
    assert len({f.tobytes() for f in faces}) == 16
    # The seed contract on the real weights: a face does not depend on the batch it is drawn in.
    assert np.array_equal(gen.generate([5])[0], faces[5])
    assert np.array_equal(gen.generate(list(range(60)))[5], faces[5])
    assert all(f.std() > 20 for f in faces), "a face is (nearly) flat"
    # Faces, not noise: neighbouring pixels are strongly correlated in a real picture.
    f = faces.astype(np.float32)
    diff = np.abs(f[:, 1:] - f[:, :-1]).mean()
    assert diff < 0.5 * f.std(axis=(1, 2, 3)).mean()
