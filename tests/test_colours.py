"""Hair and eye colours: the labeller, the directions file, edits in the library and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

HAIR_RGB = {"black": (30, 30, 35), "brown": (120, 70, 40), "blonde": (245, 225, 140), "red": (200, 30, 40),
            "pink": (245, 160, 190), "blue": (60, 110, 220), "green": (60, 170, 80), "purple": (130, 70, 170),
            "white": (215, 215, 225)}
EYE_RGB = {"brown": (130, 80, 40), "red": (210, 30, 40), "green": (40, 160, 70), "blue": (50, 90, 210),
           "purple": (140, 60, 200), "pink": (220, 60, 180)}
# Each hair colour with an eye colour unlike it (eyes drawn in the hair's colour read as bangs).
PAIRS = [("black", "brown"), ("brown", "red"), ("blonde", "green"), ("red", "blue"), ("pink", "purple"),
         ("blue", "pink"), ("green", "brown"), ("purple", "red"), ("white", "green")]


def synthetic_face(hair: str, eyes: str | None) -> np.ndarray:
    """A 64-px face in the crops' layout: hair over the top and down the sides, a skin oval, two
    irises (darker pupils, a highlight) at the eye centres; ``eyes=None`` draws them closed."""
    yy, xx = np.mgrid[0:64, 0:64]
    face = np.full((64, 64, 3), 255, np.uint8)
    face[(yy < 20) | (((xx < 10) | (xx >= 54)) & (yy < 48))] = HAIR_RGB[hair]
    face[(((yy - 38) / 22.0) ** 2 + ((xx - 32) / 20.0) ** 2 < 1) & (yy >= 16) & (xx >= 10) & (xx < 54)] = (250, 225, 205)
    for cx in (20.5, 43.5):
        if eyes is None:
            face[32, int(cx) - 4:int(cx) + 5] = (60, 40, 40)  # a closed eye: one dark line
            continue
        iris = ((yy - 32) / 4.5) ** 2 + ((xx - cx) / 3.5) ** 2 < 1
        face[iris] = EYE_RGB[eyes]
        face[iris & ((yy - 33) ** 2 + (xx - cx) ** 2 < 3)] = np.array(EYE_RGB[eyes]) // 2
        face[30, int(cx) - 1] = 255
    return face


@pytest.mark.parametrize("hair, eyes", PAIRS)
def test_labeller_reads_hair_and_eye_colours_of_synthetic_faces(hair, eyes):
    from gan.colours import label_faces

    face = synthetic_face(hair, eyes)
    big = np.repeat(np.repeat(face, 2, 0), 2, 1)  # other sizes are brought to 64 px first
    for picture in (face, big):
        labels = label_faces(picture[None])
        assert labels.hair_names() == [hair] and labels.eye_names() == [eyes]


def test_labeller_is_unsure_of_eyes_it_cannot_see():
    from gan.colours import eye_colour, hair_colour

    face = synthetic_face("blue", None)
    assert hair_colour(face) == "blue" and eye_colour(face) is None


def test_a_planted_direction_is_found_and_unsure_faces_are_left_out():
    from gan.colours import UNSURE
    from training.directions import fit_kind

    rng = np.random.default_rng(0)
    z = rng.standard_normal((3000, 128))
    a, b = np.eye(128)[0], np.eye(128)[1]
    labels = np.where(z @ a > 0.5, 0, np.where(z @ b > 0.5, 1, 2))
    labels[:300] = UNSURE
    colours, normals, offsets, summary = fit_kind(z, labels, ("first", "second", "rest", "absent"))
    assert colours == ["first", "second", "rest"]  # "absent" has no faces: no direction
    assert normals[0] @ a > 0.9 and normals[1] @ b > 0.9 and np.allclose(np.linalg.norm(normals, axis=1), 1)
    assert summary["unsure"] == 300 and summary["counts"]["absent"] == 0


def test_directions_are_recorded_with_their_hash_and_a_modified_file_is_refused(coloured_style, tmp_path):
    from gan.inference import AvatarGenerator
    from gan.styles import StyleError, read_style, sha256_file

    folder = coloured_style / "default"
    entry = json.loads((folder / "style.json").read_text())["directions"]
    assert entry["sha256"] == sha256_file(folder / "directions.npz") and entry["hair"][:2] == ["black", "brown"]
    assert entry["rule"]["targets"]["eyes"]["red"] == 1.5 and (folder / "colours.png").is_file()
    assert "directions.npz" not in entry.get("weights", {})  # the network files' map is left alone
    gen = AvatarGenerator.load(folder)
    assert gen.colours("eyes") == ("brown", "red", "green", "blue", "purple", "pink")

    broken = tmp_path / "default"
    shutil.copytree(folder, broken)
    data = bytearray((broken / "directions.npz").read_bytes())
    data[len(data) // 2] ^= 1
    (broken / "directions.npz").write_bytes(bytes(data))
    for load in (read_style, AvatarGenerator.load):
        with pytest.raises(StyleError, match=r"directions.npz does not match the sha256 in style.json"):
            load(broken)
    (broken / "directions.npz").unlink()
    with pytest.raises(StyleError, match=r"lists colour directions, but .*directions.npz is missing"):
        read_style(broken)


def test_an_edit_reaches_its_colour_and_is_the_same_alone_and_in_any_batch(coloured_style):
    from gan.inference import AvatarGenerator
    from gan.latents import latents_for_seeds

    gen = AvatarGenerator.load(coloured_style / "default")
    alone = gen.generate([42], hair="blue", eyes="red")[0]
    assert not np.array_equal(alone, gen.generate([42])[0])
    for batch in (3, 17, 64, 100):
        seeds = list(range(500, 500 + batch))
        seeds[batch // 2] = 42
        assert np.array_equal(gen.generate(seeds, hair="blue", eyes="red")[batch // 2], alone), batch
    z = gen.edit(latents_for_seeds(list(range(20)), 128), hair="blue")
    d = gen.directions.distances("hair", z)
    blue = gen.colours("hair").index("blue")
    assert d[:, blue].min() >= 1.0 - 1e-5 and np.delete(d, blue, 1).max() <= 1e-5  # the rule, met exactly
    plain = latents_for_seeds(list(range(20)), 128)
    np.testing.assert_allclose(gen.directions.distances("eyes", z), gen.directions.distances("eyes", plain),
                               atol=1e-5)  # a hair edit leaves every eye score as it was
    before = gen.directions.distances("hair", plain)
    after = gen.directions.distances("hair", gen.edit(latents_for_seeds(list(range(20)), 128), "blue", "red"))
    np.testing.assert_allclose(after, d, atol=1e-5)  # an eye edit leaves every hair score as it was
    assert not np.allclose(before, d)
    meta = gen.metadata(42, hair="Blue", eyes="red")
    assert meta["hair"] == "blue" and meta["eyes"] == "red" and meta["directions_sha256"] == gen.directions.sha256
    assert "hair" not in gen.metadata(42)


def test_unknown_colours_and_styles_without_directions_say_so(coloured_style, tiny_style):
    from gan.inference import AvatarGenerator

    gen = AvatarGenerator.load(coloured_style / "default")
    with pytest.raises(ValueError, match=r"unknown hair colour 'teal': choose one of black, brown, .*white"):
        gen.generate([1], hair="teal")
    assert np.array_equal(gen.generate([1], hair="silver"), gen.generate([1], hair="white"))
    plain = AvatarGenerator.load(tiny_style / "default")
    assert plain.colours("hair") == ()
    for call in (lambda: plain.generate([1], eyes="red"), lambda: plain.metadata(1, hair="blue")):
        with pytest.raises(ValueError, match=r"style 'default' has no hair or eye colour directions"):
            call()


def avatarbot(*args):
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=REPO, capture_output=True, text=True)


def test_cli_draws_an_edit_names_it_in_the_png_and_refuses_bad_colours_in_one_line(coloured_style, tmp_path):
    from gan.imaging import read_png_metadata

    out = tmp_path / "a.png"
    res = avatarbot("generate", "--seed", "42", "--size", "64", "--hair", "blue", "--eyes", "red",
                    "--weights-dir", str(coloured_style), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert "hair blue, eyes red" in res.stdout
    meta = read_png_metadata(out.read_bytes())
    assert meta["hair"] == "blue" and meta["eyes"] == "red" and len(meta["directions_sha256"]) == 64

    res = avatarbot("grid", "--seeds", "1-4", "--hair", "teal", "--weights-dir", str(coloured_style),
                    "-o", str(tmp_path / "g.png"))
    assert res.returncode == 2 and not (tmp_path / "g.png").exists()
    assert res.stderr.strip().count("\n") == 0
    assert "unknown hair colour 'teal': choose one of black, brown, blonde" in res.stderr


def test_fitting_a_style_whose_faces_show_no_colours_says_so_in_one_line(tiny_style, tmp_path):
    """The tiny random style draws grey noise: the labeller sees black hair and no eyes in it."""
    shutil.copytree(tiny_style / "default", tmp_path / "default")
    res = subprocess.run([sys.executable, "-m", "training", "directions", str(tmp_path / "default"),
                          "--samples", "1000", "--calibration", "50", "--write", "--no-progress"],
                         cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("avatarbot-train: error: cannot fit hair colour directions")
    assert "black 1000" in res.stderr and not (tmp_path / "default" / "directions.npz").exists()
