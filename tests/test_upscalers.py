"""HD avatars: the Keras Real-CUGAN against the ncnn reference, the converter, the student, the contract."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures" / "realcugan"
UPSCALERS = REPO / "weights" / "upscalers"


def load_png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def shipped():
    """The shipped default style with the shipped upscalers."""
    from gan.inference import AvatarGenerator
    from gan.upscalers import UpscalerLibrary

    return AvatarGenerator.load(REPO / "weights" / "default", upscalers=UpscalerLibrary(UPSCALERS))


@pytest.mark.parametrize("variant", ["4x-denoise3x", "4x-no-denoise", "2x-no-denoise"])
def test_keras_real_cugan_matches_the_ncnn_reference(variant):
    from gan.cugan import to_uint8
    from gan.upscalers import load_network

    model, info = load_network(UPSCALERS / f"realcugan-{variant}")
    inputs = np.stack([load_png(FIXTURES / f"input-{i}.png") for i in range(2)])
    expected = np.stack([load_png(FIXTURES / f"ncnn-{variant}-{i}.png") for i in range(2)])
    ours = to_uint8(model(inputs.astype(np.float32) / 255.0, training=False).numpy())
    assert ours.shape == expected.shape == (2, 48 * info.scale, 48 * info.scale, 3)
    diff = np.abs(ours.astype(int) - expected)
    assert (diff <= 2).mean() >= 0.99, f"only {(diff <= 2).mean():.4f} of pixels within 2 levels"
    assert diff.mean() < 0.05
    # Not trivially close: the reference is far from a plain enlargement.
    bicubic = np.stack([np.asarray(Image.fromarray(a).resize(expected.shape[1:3], Image.BICUBIC)) for a in inputs])
    assert np.abs(bicubic.astype(int) - expected).mean() > 2


def test_upscaler_folders_are_not_styles_and_carry_their_licence():
    from gan.styles import list_styles

    assert [s.name for s in list_styles(REPO / "weights")] == ["default"]
    card = (UPSCALERS / "MODEL_CARD.md").read_text()
    for folder in sorted(p for p in UPSCALERS.iterdir() if p.is_dir()):
        meta = json.loads((folder / "upscaler.json").read_text())
        assert meta["weights_sha256"] in card, f"{folder.name}'s hash is not in the model card"
    assert "MIT" in (UPSCALERS / "LICENSE-Real-CUGAN.txt").read_text()


def test_a_tampered_upscaler_is_refused_with_one_clear_line(tmp_path):
    from gan.upscalers import UpscalerError, load_network

    folder = tmp_path / "student-4x"
    shutil.copytree(UPSCALERS / "student-4x", folder)
    (folder / "upscaler.weights.h5").write_bytes(b"not weights")
    with pytest.raises(UpscalerError, match="does not match the sha256"):
        load_network(folder)
    meta = json.loads((folder / "upscaler.json").read_text())
    shutil.copy(UPSCALERS / "realcugan-2x-no-denoise" / "upscaler.weights.h5", folder / "upscaler.weights.h5")
    from gan.styles import sha256_file

    meta["weights_sha256"] = sha256_file(folder / "upscaler.weights.h5")
    (folder / "upscaler.json").write_text(json.dumps(meta))
    with pytest.raises(UpscalerError, match="does not fit the student network"):
        load_network(folder)


def test_generate_keeps_native_faces_and_gives_hd_ones_on_request(shipped):
    faces = shipped.generate([3, 4])
    assert faces.shape == (2, 64, 64, 3)  # what FID measures
    hd = shipped.generate([3, 4], size=256)
    assert hd.shape == (2, 256, 256, 3)
    np.testing.assert_array_equal(hd, shipped.upscale(faces, 256))
    assert shipped.default_upscaler == "student"
    with pytest.raises(ValueError, match="faces must have shape"):
        shipped.upscale(np.zeros((1, 32, 32, 3), np.uint8), 256)
    with pytest.raises(ValueError, match="unknown upscaler"):
        shipped.upscale(faces, 256, "waifu2x")
    with pytest.raises(ValueError, match="size must be"):
        shipped.generate([3], size=1024)


@pytest.mark.parametrize("name, size", [("student", 256), ("student", 128), ("cugan", 256), ("bicubic", 200)])
def test_a_face_upscales_to_the_same_bytes_alone_or_in_a_batch(shipped, name, size):
    faces = shipped.generate(list(range(20, 37)))  # 17 faces: runs as 16 + 1 where both shapes agree
    together = shipped.upscale(faces, size, name)
    assert together.shape == (17, size, size, 3)
    for i in (0, 5, 16):
        np.testing.assert_array_equal(shipped.upscale(faces[i:i + 1], size, name)[0], together[i])


def test_hd_faces_are_sharper_than_bicubic_and_true_to_the_face(shipped):
    from gan.upscalers import resize
    from training.distill import mean_gradient, psnr

    faces = shipped.generate(list(range(16)))
    bicubic, student, cugan = (shipped.upscale(faces, 256, n) for n in ("bicubic", "student", "cugan"))
    assert mean_gradient(student) > 1.15 * mean_gradient(bicubic)
    assert mean_gradient(cugan) > 1.3 * mean_gradient(bicubic)
    assert psnr(student, cugan) > psnr(bicubic, cugan) + 3  # the student learnt the teacher
    assert psnr(resize(student, 64), faces) > 26  # and still draws the same face


def test_a_style_chooses_its_upscaler(tmp_path):
    from gan.inference import AvatarGenerator
    from tests.conftest import make_style

    folder = make_style(tmp_path / "plain")
    assert AvatarGenerator.load(folder).default_upscaler == "student"
    flat = AvatarGenerator.load(make_style(tmp_path / "flat", g_head=8, g_palette=8))
    assert flat.default_upscaler == "bicubic"  # flat tones stay flat
    meta = json.loads((folder / "style.json").read_text())
    meta["upscaler"] = "cugan"
    (folder / "style.json").write_text(json.dumps(meta))
    chosen = AvatarGenerator.load(folder)
    assert chosen.default_upscaler == "cugan"
    assert chosen.metadata(1, size=256)["upscaler"] == "cugan"
    meta["upscalers"] = {"student": ["../../elsewhere"]}  # folder names only, never paths
    (folder / "style.json").write_text(json.dumps(meta))
    from gan.upscalers import UpscalerError

    with pytest.raises(UpscalerError, match="plain folder names only"):
        AvatarGenerator.load(folder).generate([1], size=256, upscaler="student")


def test_512_px_runs_real_cugan_twice_and_the_metadata_says_so(shipped):
    face = shipped.generate([42])
    big = shipped.upscale(face, 512, "cugan")
    assert big.shape == (1, 512, 512, 3)
    meta = shipped.metadata(42, 1.0, "cugan", 512)
    assert meta["upscaler"] == "cugan"
    stages = meta["upscaler_weights"].split("+")
    assert [s.split("@")[0] for s in stages] == ["realcugan-4x-no-denoise", "realcugan-2x-no-denoise"]
    assert shipped.metadata(42, 1.0, "cugan", 256)["upscaler_weights"].count("@") == 1
    assert "upscaler_weights" not in shipped.metadata(42, 1.0, "bicubic", 256)


def test_prepare_loads_the_stages_a_size_needs_so_that_no_request_waits_for_them(tmp_path, caplog):
    import logging

    from gan.upscalers import Upscaler, UpscalerLibrary
    from tests.fakes.styles import make_tiny_upscaler

    root = tmp_path / "upscalers"
    make_tiny_upscaler(root / "tiny-4x", 4)
    make_tiny_upscaler(root / "tiny-2x", 2)
    own = {"upscalers": {"cugan": ["tiny-4x", "tiny-2x"]}}  # a style's own chain for the name "cugan"

    def loaded() -> list[str]:
        return [r.getMessage().split()[2] for r in caplog.records if r.getMessage().startswith("loaded upscaler")]

    with caplog.at_level(logging.INFO, logger="gan.upscalers"):
        upscaler = UpscalerLibrary(root).get("cugan", own)
        assert loaded() == ["tiny-4x"], "the first stage loads with the upscaler"
        upscaler.prepare(256)
        assert loaded() == ["tiny-4x"], "256 px needs no second stage"
        upscaler.prepare(512)
        assert loaded() == ["tiny-4x", "tiny-2x"]
        faces = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), np.uint8)
        assert upscaler.upscale(faces, 512).shape == (2, 512, 512, 3)
        upscaler.prepare(512)
        assert loaded() == ["tiny-4x", "tiny-2x"], "each stage loads once"
    Upscaler().prepare(512)  # interpolation has nothing to load


def test_the_cli_writes_a_crisp_hd_avatar_by_default(tmp_path, capsys, monkeypatch):
    """``avatarbot generate`` (``bot.cli.main``, in this process: tests/test_cli.py runs the console
    command in a process of its own) with the shipped weights and nothing else said."""
    from bot.cli import main
    from gan.imaging import read_png_metadata

    monkeypatch.delenv("WEIGHTS_DIR", raising=False)
    monkeypatch.chdir(REPO)
    out = tmp_path / "a.png"
    assert main(["generate", "--seed", "42", "-o", str(out)]) == 0
    assert "256 px by student" in capsys.readouterr().out
    meta = read_png_metadata(out.read_bytes())
    assert meta["upscaler"] == "student" and meta["upscaler_weights"].startswith("student-4x@")
    assert meta["size"] == "256"
    with pytest.raises(SystemExit) as exit_status:
        main(["generate", "--seed", "42", "--upscaler", "nope", "-o", str(tmp_path / "b.png")])
    assert exit_status.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert not (tmp_path / "b.png").exists()


def test_ncnn_param_parsing_and_its_errors(tmp_path):
    from training.cugan_convert import NcnnFormatError, parse_param, read_weights

    text = ("7767517\n3 3\nInput in0 0 1 in0\n"
            "Convolution conv 1 1 in0 a 0=2 1=1 5=1 6=6 9=2 -23310=1,1.000000e-01\n"
            "InnerProduct fc 1 1 a out0 0=1 1=0 2=2\n")
    layers = parse_param(text)
    assert [(l.type, l.name) for l in layers] == [("Input", "in0"), ("Convolution", "conv"), ("InnerProduct", "fc")]
    assert layers[1].params == {0: 2, 1: 1, 5: 1, 6: 6, 9: 2, 10: [0.1]}
    param = tmp_path / "m.param"
    param.write_text(text)
    conv_w = np.arange(6, dtype=np.float16)  # stored float16 behind its tag, as the models are
    blob = (np.uint32(0x01306B47).tobytes() + conv_w.tobytes() + np.float32([1, 2]).tobytes()
            + np.uint32(0).tobytes() + np.float32([3, 4]).tobytes())
    (tmp_path / "m.bin").write_bytes(blob)
    (conv, (kernel, bias)), (fc, (fc_kernel,)) = read_weights(param, tmp_path / "m.bin")
    assert kernel.shape == (1, 1, 3, 2) and kernel[0, 0, :, 1].tolist() == [3, 4, 5]  # (out, in) -> (in, out)
    assert bias.tolist() == [1, 2] and fc_kernel.tolist() == [[3], [4]]
    (tmp_path / "short.bin").write_bytes(blob[:-4])
    with pytest.raises(NcnnFormatError, match="ends before"):
        read_weights(param, tmp_path / "short.bin")
    (tmp_path / "long.bin").write_bytes(blob + b"\0" * 8)
    with pytest.raises(NcnnFormatError, match="were not used"):
        read_weights(param, tmp_path / "long.bin")
    for bad, message in [("123\n1 1\nInput in0 0 1 in0\n", "magic"),
                         ("7767517\n2 2\nInput in0 0 1 in0\n", "expected 2 layer lines"),
                         ("7767517\n1 1\nInput in0 0 1\n", "fewer blob names")]:
        with pytest.raises(NcnnFormatError, match=message):
            parse_param(bad)


def test_distill_trains_resumes_and_exports_a_loadable_student(tiny_style, tmp_path):
    from gan.inference import AvatarGenerator
    from gan.upscalers import UpscalerLibrary, read_upscaler
    from training.distill import DistillOptions, export, init_student, make_pairs, train

    run = tmp_path / "run"
    run.mkdir()
    options = DistillOptions(style=str(tiny_style / "default"), teacher=str(UPSCALERS / "realcugan-4x-no-denoise"),
                             pairs=6, steps=4, batch_size=2, crop=16, checkpoint_every=2, held_out=3,
                             student={"channels": 8, "blocks": 1, "stage2": 4, "stage2_convs": 2, "context": 1})
    options.save(run)
    make_pairs(run, options, progress=False)
    assert sorted(p.name for p in (run / "pairs").iterdir()) == ["gen-0000.npz", "heldout-gen.npz"]
    options.steps = 2
    train(run, options, progress=False)
    options.steps = 4
    scores = train(run, options, progress=False)  # resumes at step 2
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [2, 4] and {"psnr_gen", "psnr_y_gen"} <= set(scores)
    folder = export(run, tmp_path / "upscalers" / "student-4x")
    info = read_upscaler(folder)
    assert info.kind == "student" and info.meta["training"]["steps"] == 4 and info.meta["config"]["stage2"] == 4
    assert info.meta["teacher"]["name"] == "realcugan-4x-no-denoise"
    assert (folder / "comparison.png").exists()
    gen = AvatarGenerator.load(tiny_style / "default", upscalers=UpscalerLibrary(tmp_path / "upscalers"))
    assert gen.generate([1], size=256).shape == (1, 256, 256, 3)

    # A fine-tune starts from the exported student (its shape and weights) and scores its weight average:
    # with a learning rate too small to move anything, it scores what the export scored.
    tuned = tmp_path / "tuned"
    (tuned / "pairs").mkdir(parents=True)
    for pair in (run / "pairs").iterdir():
        shutil.copy(pair, tuned / "pairs" / pair.name)
    fine = DistillOptions(**{**vars(options), "steps": 1, "checkpoint_every": 1, "lr": 1e-12, "loss": "mse",
                             "ema": 0.9, "init": str(folder)})
    fine.save(tuned)
    assert train(tuned, fine, progress=False)["psnr_gen"] == info.meta["metrics"]["psnr_gen"]
    tuned_info = read_upscaler(export(tuned, tmp_path / "tuned-upscaler" / "student-4x"))
    assert tuned_info.meta["training"]["init"]["weights_sha256"] == info.weights_sha256 and tuned_info.meta["training"]["loss"] == "mse"
    assert tuned_info.meta["metrics"]["psnr_gen"] == info.meta["metrics"]["psnr_gen"]
    with pytest.raises(ValueError, match="not a student"):
        init_student(str(UPSCALERS / "realcugan-4x-no-denoise"))
