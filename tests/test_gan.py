"""The engine: networks, losses, seed contract, styles on disk, inference, image output."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, make_style, tiny_config


@pytest.mark.parametrize("preset", ["seed", "improved"])
def test_network_shapes_of_both_presets(preset):
    from gan.config import GANConfig
    from gan.networks import build_discriminator, build_generator

    config = GANConfig.preset_config(preset)
    g, d = build_generator(config), build_discriminator(config)
    z = np.random.default_rng(0).standard_normal((2, config.latent_dim)).astype("float32")
    images = g(z, training=False).numpy()
    assert images.shape == (2, 64, 64, 3)
    assert images.min() >= -1 and images.max() <= 1
    assert d(images, training=False).shape == (2, 1)


def test_seed_preset_follows_the_seed_document():
    from gan.config import GANConfig
    from gan.networks import build_discriminator, build_generator

    config = GANConfig.preset_config("seed")
    assert (config.latent_dim, config.g_lr, config.d_lr, config.loss) == (100, 1e-4, 1e-4, "bce")
    g = build_generator(config)
    convt = [layer for layer in g.layers if layer.__class__.__name__ == "Conv2DTranspose"]
    assert [c.filters for c in convt] == [128, 64, 32, 3]  # 32: the stage the listing is missing
    assert [c.strides for c in convt] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert all(c.kernel_size == (5, 5) for c in convt)
    d = build_discriminator(config)
    assert [layer.rate for layer in d.layers if layer.__class__.__name__ == "BitsDropout"] == [0.3, 0.3]


def test_seed_networks_compute_the_article_listings():
    """Same weights, same outputs as the seed's listings written with stock Keras layers (the
    training benchmark's baseline): our seed preset is the article's model, only run faster."""
    from benchmarks.train_throughput import make_discriminator_model, make_generator_model
    from gan.config import GANConfig
    from gan.networks import build_discriminator, build_generator

    config = GANConfig.preset_config("seed")
    ours_g, ours_d = build_generator(config), build_discriminator(config)
    stock_g, stock_d = make_generator_model(config.latent_dim), make_discriminator_model()
    stock_g.set_weights(ours_g.get_weights())
    stock_d.set_weights(ours_d.get_weights())
    z = np.random.default_rng(1).standard_normal((3, config.latent_dim)).astype("float32")
    images = ours_g(z, training=False).numpy()
    np.testing.assert_allclose(stock_g(z, training=False).numpy(), images, atol=1e-5)
    np.testing.assert_allclose(stock_d(images, training=False).numpy(), ours_d(images, training=False).numpy(),
                               rtol=1e-4, atol=1e-5)


def test_bits_dropout_drops_at_its_rate_and_scales_the_rest():
    import tensorflow as tf

    from gan.networks import BitsDropout

    layer = BitsDropout(0.3, seed=7)
    x = tf.ones((32, 17, 15, 9))  # an odd element count: one spare random half is drawn
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
    out = y.numpy()
    assert abs((out == 0).mean() - 0.3) < 0.01
    np.testing.assert_allclose(np.unique(out), [0.0, 1 / 0.7], rtol=1e-6)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), out)  # d(x*mask)/dx = mask
    again = layer(x, training=True).numpy()
    assert 0.35 < (again != out).mean() < 0.49  # a fresh mask each call (expected 2*0.3*0.7)
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())  # inference: identity


def test_seed_loss_equals_hand_computed_value():
    from gan.losses import bce_d_loss, bce_g_loss

    real, fake = np.array([[2.0], [0.5]], "float32"), np.array([[-1.0], [3.0]], "float32")
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected_d = [-math.log(sig(2.0)) - math.log(1 - sig(-1.0)), -math.log(sig(0.5)) - math.log(1 - sig(3.0))]
    expected_g = [-math.log(sig(-1.0)), -math.log(sig(3.0))]
    np.testing.assert_allclose(bce_d_loss(real, fake).numpy(), expected_d, rtol=1e-5)
    np.testing.assert_allclose(bce_g_loss(fake).numpy(), expected_g, rtol=1e-5)


def test_colour_histogram_distance_sees_tones_not_layout():
    """The histogram loss is zero for the same colours moved around (a mirrored batch) and grows
    with a tone change: halving the contrast of pixels spread over [-1, 1] moves them 0.25 apart
    on average along any direction."""
    import tensorflow as tf

    from gan.losses import colour_histogram_distance

    gray = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 1)).astype("float32")
    images = np.repeat(gray, 3, axis=-1)
    assert float(colour_histogram_distance(images, images[:, :, ::-1])) < 1e-6
    # Along a unit direction u a gray pixel g projects to g * sum(u), and E|sum(u)| = 0.87 over
    # random directions: the expected distance is 0.5 * E|g| * 0.87 = 0.22.
    tf.random.set_seed(0)
    assert 0.1 < float(colour_histogram_distance(images, images * 0.5)) < 0.4


def test_train_step_updates_both_networks_and_reports_losses():
    from gan.model import GAN

    gan = GAN(tiny_config())
    gan.compile()
    real = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
    g_before = [w.copy() for w in gan.generator.get_weights()]
    d_before = [w.copy() for w in gan.discriminator.get_weights()]
    logs = gan.train_step(real)
    assert np.isfinite(float(logs["d_loss"])) and np.isfinite(float(logs["g_loss"]))
    assert any(not np.array_equal(a, b) for a, b in zip(g_before, gan.generator.get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(d_before, gan.discriminator.get_weights()))


def test_frozen_blocks_stay_fixed_while_the_rest_trains():
    """Few-shot fine-tuning freezes early blocks: a train step leaves them untouched."""
    from gan.model import GAN

    gan = GAN(tiny_config(g_frozen_layers=3, d_frozen_layers=1))
    gan.compile()
    real = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
    kernels = lambda model: {layer.name: layer.get_weights()[0].copy()  # noqa: E731
                             for layer in model.layers if hasattr(layer, "kernel")}
    g_before, d_before = kernels(gan.generator), kernels(gan.discriminator)
    gan.train_step(real)
    g_changed = [not np.array_equal(w, kernels(gan.generator)[n]) for n, w in g_before.items()]
    d_changed = [not np.array_equal(w, kernels(gan.discriminator)[n]) for n, w in d_before.items()]
    assert g_changed == [False, False, False, True, True]  # Dense, 2 ConvT frozen; 2 ConvT train
    assert d_changed == [False, True, True, True, True]  # conv0 frozen; conv1-3 and the logit train
    with pytest.raises(ValueError, match="g_frozen_layers"):
        tiny_config(g_frozen_layers=6)


def test_diffaugment_keeps_shape_and_changes_images():
    from gan.augment import diff_augment

    x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 3)).astype("float32")
    y = diff_augment(x, "color,translation,cutout").numpy()
    assert y.shape == x.shape and not np.allclose(x, y)
    with pytest.raises(ValueError, match="unknown DiffAugment policy"):
        diff_augment(x, "rotate")


def test_seed_contract_is_pinned():
    """The seed -> latent and name -> seed mappings are a public promise: these values never change."""
    from gan.latents import latent_for_seed, seed_for_name

    z = latent_for_seed(42, 4)
    expected = np.random.Generator(np.random.PCG64(42)).standard_normal(4).astype(np.float32)
    np.testing.assert_array_equal(z, expected)
    np.testing.assert_allclose(z, [0.30471708, -1.0399841, 0.7504512, 0.94056472], rtol=1e-6)
    assert seed_for_name("Alice") == seed_for_name("  alice ") == 7519593804245791332
    assert 0 <= seed_for_name("ünïcødé 名前") < 2**63


@pytest.mark.parametrize("bad", [-1, 2**63, 1.5, "7", True])
def test_bad_seeds_are_refused(bad):
    from gan.latents import check_seed

    with pytest.raises(ValueError, match="seed must"):
        check_seed(bad)


@pytest.mark.parametrize("bad", ["ink\n", "\nink", "ink\r\n", "", "Ink", "-ink", "a" * 33, "in k", None])
def test_style_names_are_checked_whole(bad):
    from gan.styles import StyleError, check_style_name

    with pytest.raises(StyleError, match="invalid style name"):
        check_style_name(bad)
    assert check_style_name("ink-2") == "ink-2" and check_style_name("a" * 32) == "a" * 32


def test_style_round_trip_gives_identical_images(tmp_path):
    import keras

    from gan.inference import AvatarGenerator
    from gan.networks import build_generator
    from gan.styles import float32_policy, load_generator, write_style

    config = tiny_config()
    with float32_policy():
        g = build_generator(config)
    z = np.random.default_rng(1).standard_normal((3, config.latent_dim)).astype("float32")
    write_style(tmp_path / "s", "s", config, g)
    loaded, info = load_generator(tmp_path / "s")
    np.testing.assert_array_equal(g(z, training=False).numpy(), loaded(z, training=False).numpy())
    assert info.name == "s" and len(info.generator_sha256) == 64
    assert isinstance(loaded, keras.Model)
    assert AvatarGenerator(loaded, info).generate([1, 2]).dtype == np.uint8


def test_corrupted_weights_file_gives_clear_error(tmp_path):
    from gan.inference import AvatarGenerator
    from gan.styles import GENERATOR_FILE, StyleError

    folder = make_style(tmp_path, "broken")
    path = folder / GENERATOR_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StyleError, match="does not match the sha256"):
        AvatarGenerator.load(folder)


def test_mismatched_weights_give_clear_error(tmp_path):
    from gan.inference import AvatarGenerator
    from gan.styles import StyleError

    folder = make_style(tmp_path, "wide")
    meta = json.loads((folder / "style.json").read_text())
    meta["config"]["g_channels"] = 16  # the file holds 8-channel weights
    (folder / "style.json").write_text(json.dumps(meta))
    with pytest.raises(StyleError, match="does not fit the architecture"):
        AvatarGenerator.load(folder)


def test_missing_style_json_and_truncated_file(tmp_path):
    from gan.styles import GENERATOR_FILE, StyleError, read_style

    with pytest.raises(StyleError, match="not found"):
        read_style(tmp_path / "nothing")
    folder = make_style(tmp_path, "cut")
    (folder / "style.json").write_text("{not json")
    with pytest.raises(StyleError, match="corrupt or incomplete"):
        read_style(folder)
    folder = make_style(tmp_path, "gone")
    (folder / GENERATOR_FILE).unlink()
    with pytest.raises(StyleError, match="missing"):
        read_style(folder)


def test_same_seed_same_face_regardless_of_batch(tiny_style):
    from gan.inference import AvatarGenerator

    gen = AvatarGenerator.load(tiny_style / "default")
    alone = gen.generate([42])[0]
    # every compiled shape, batches cut into several shapes (17 = 1 + 16), and one split at 64
    for batch in (3, 10, 17, 30, 40, 64, 100):
        seeds = list(range(1000, 1000 + batch))
        seeds[batch // 2] = seeds[-1] = 42
        faces = gen.generate(seeds)
        assert np.array_equal(alone, faces[batch // 2]) and np.array_equal(alone, faces[-1]), batch
    faces = gen.generate(list(range(8)))
    assert len({f.tobytes() for f in faces}) == 8


def test_truncation_variations_and_interpolation(tiny_style):
    from gan.inference import AvatarGenerator

    gen = AvatarGenerator.load(tiny_style / "default")
    base = gen.generate([7])[0].astype(int)
    near = gen.variations(7, count=4, strength=0.2)
    far = gen.variations(7, count=4, strength=1.5)
    assert near.shape == (4, 64, 64, 3) and len({v.tobytes() for v in near}) == 4
    assert np.abs(near.astype(int) - base).mean() < np.abs(far.astype(int) - base).mean()
    frames = gen.interpolate(7, 8, steps=6)
    assert np.array_equal(frames[0], base) and np.array_equal(frames[-1], gen.generate([8])[0])
    assert not np.array_equal(gen.generate([7], truncation=0.5)[0], base)
    with pytest.raises(ValueError, match="truncation"):
        gen.generate([7], truncation=2.0)


def test_png_metadata_upscale_grid_and_gif(tiny_style):
    from gan.imaging import avatar_png, gif_bytes, grid, read_png_metadata
    from gan.inference import AvatarGenerator

    gen = AvatarGenerator.load(tiny_style / "default")
    faces = gen.generate([1, 2, 3, 4])
    data = avatar_png(faces[0], 256, gen.metadata(1, 1.0))
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.size == (256, 256)
    meta = read_png_metadata(data)
    assert meta["seed"] == "1" and meta["style"] == "default"
    assert meta["weights_sha256"] == gen.weights_sha256 and meta["truncation"] == "1"
    assert grid(faces, cols=2, pad=2).size == (2 * 64 + 3 * 2, 2 * 64 + 3 * 2)
    with Image.open(io.BytesIO(gif_bytes(gen.interpolate(1, 2, 5), size=128))) as im:
        assert im.format == "GIF" and im.n_frames == 8 and im.size == (128, 128)


def test_png_is_lossless_valid_and_keeps_unicode_metadata():
    from gan.imaging import png_bytes, read_png_metadata

    rng = np.random.default_rng(0)
    for shape in [(1, 1, 3), (7, 13, 3), (256, 256, 3)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        data = png_bytes(pixels, {"name": "Ayanami \u7dbe\u6ce2", "seed": 5, "note": "caf\u00e9\0x"})
        with Image.open(io.BytesIO(data)) as im:
            im.verify()  # chunk CRCs and structure
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "RGB" and np.array_equal(np.asarray(im), pixels)
        assert read_png_metadata(data) == {"name": "Ayanami \u7dbe\u6ce2", "seed": "5", "note": "caf\u00e9x"}
    with pytest.raises(ValueError, match="RGB"):
        png_bytes(np.zeros((4, 4), np.uint8))


def test_same_seed_identical_pixels_in_two_processes(tiny_style, tmp_path):
    """A fresh process, and this one (which has run other tests before: whatever they left set must
    not change a face)."""
    from bot.cli import main

    args = ["generate", "--seed", "123456789", "--weights-dir", str(tiny_style), "-o"]
    subprocess.run([sys.executable, "-m", "bot", *args, str(tmp_path / "a0.png")], check=True, cwd=REPO,
                   capture_output=True)
    assert main([*args, str(tmp_path / "a1.png")]) == 0
    outs = []
    for i in range(2):
        with Image.open(tmp_path / f"a{i}.png") as im:
            outs.append(np.asarray(im.convert("RGB")))
    assert np.array_equal(outs[0], outs[1])
    assert outs[0].std() > 0


@pytest.mark.parametrize("every", [1, 2])
def test_r1_penalty_flattens_the_discriminator_around_real_images(every):
    """d_r1 adds gamma/2 * |grad_x D(x)|^2 on real images to D's loss: after a few steps from the
    same start on the same batch, D's slope at those images is far smaller than without it. Lazy
    (``d_r1_every`` 2: on every other step at twice the weight) it flattens D as well."""
    import tensorflow as tf

    from gan.model import GAN

    real = np.random.default_rng(0).uniform(-1, 1, (8, 64, 64, 3)).astype("float32")

    def slope_after_training(d_r1: float) -> float:
        tf.keras.utils.set_random_seed(3)
        gan = GAN(tiny_config(d_r1=d_r1, d_r1_every=every, d_lr=1e-3))
        gan.compile()
        for _ in range(8):
            gan.train_step(real)
        x = tf.constant(real)
        with tf.GradientTape() as tape:
            tape.watch(x)
            logit_sum = tf.reduce_sum(gan.discriminator(x, training=True))
        return float(tf.reduce_mean(tf.reduce_sum(tf.square(tape.gradient(logit_sum, x)), axis=[1, 2, 3])))

    assert slope_after_training(10.0) < 0.5 * slope_after_training(0.0)
    with pytest.raises(ValueError, match="d_r1"):
        tiny_config(d_r1=-1.0)
    with pytest.raises(ValueError, match="d_r1_every"):
        tiny_config(d_r1_every=0)


def test_batchnorm_recalibration_reaches_the_frozen_ema_generator():
    """Exports and sample grids recalibrate the EMA generator's BatchNorm statistics for its own
    weights. The EMA generator is frozen, and a frozen BatchNorm ignores training=True, so without
    care the recalibration silently kept the live generator's statistics."""
    import keras

    from gan.model import GAN
    from gan.networks import recalibrate_batchnorm

    gan = GAN(tiny_config(ema_decay=0.9))
    ema, live = gan.ema_generator, gan.generator
    assert not ema.trainable
    bns = lambda g: [l for l in g.layers if isinstance(l, keras.layers.BatchNormalization)]  # noqa: E731
    recalibrate_batchnorm(ema, 128, batches=8, batch_size=256)
    # What each BatchNorm sees with batch statistics, from the same weights in a trainable copy.
    probe = keras.Model(live.input, [bn.input for bn in bns(live)])
    z = np.random.default_rng(1).standard_normal((2048, 128)).astype("float32")
    inputs = probe(z, training=True)
    for bn, x in zip(bns(ema), inputs):
        x = np.asarray(x).reshape(-1, x.shape[-1])
        assert np.abs(bn.moving_mean.numpy() - x.mean(0)).mean() < 0.05 * x.std()
        assert np.abs(bn.moving_variance.numpy() / x.var(0) - 1).mean() < 0.1
    assert not ema.trainable and all(not bn.trainable for bn in bns(ema))


def test_batchnorm_recalibration_leaves_frozen_blocks_alone():
    """A style job freezes the default's blocks under its head; their BatchNorm statistics are the
    ones the head trained on, so exports and sample grids keep them (and skip the work when every
    block is frozen), while the statistics of blocks that trained are recomputed."""
    import keras

    from gan.model import GAN
    from gan.networks import generator_blocks, recalibrate_batchnorm

    gan = GAN(tiny_config(ema_decay=0.9))
    ema = gan.ema_generator
    bns = [l for l in ema.layers if isinstance(l, keras.layers.BatchNormalization)]
    frozen = {id(l) for l in generator_blocks(ema, 2)}
    assert 0 < sum(id(bn) in frozen for bn in bns) < len(bns)
    before = [bn.moving_mean.numpy().copy() for bn in bns]
    recalibrate_batchnorm(ema, 128, batches=2, batch_size=64, frozen_blocks=2)
    for bn, old in zip(bns, before):
        assert np.array_equal(bn.moving_mean.numpy(), old) == (id(bn) in frozen), bn.name
    before = [bn.moving_mean.numpy().copy() for bn in bns]
    recalibrate_batchnorm(ema, 128, batches=2, batch_size=64, frozen_blocks=5)
    assert all(np.array_equal(bn.moving_mean.numpy(), old) for bn, old in zip(bns, before))


def test_a_style_head_starts_as_the_base_style_and_only_the_head_trains(tiny_style):
    """A custom style may add a style head on a frozen default style: it first draws exactly the
    default's faces, then training changes the head alone, never the default's weights."""
    import dataclasses

    from gan.latents import latents_for_seeds
    from gan.model import GAN
    from gan.styles import load_generator, load_style_into, read_style

    default = tiny_style / "default"
    config = dataclasses.replace(read_style(default).config, g_head=8, g_frozen_layers=5)
    gan = GAN(config)
    gan.compile()
    load_style_into(default, gan)
    base, _ = load_generator(default)
    z = latents_for_seeds(list(range(6)), config.latent_dim)
    np.testing.assert_allclose(gan.generator(z, training=False), base(z, training=False), atol=1e-6)

    head = lambda: [w.numpy().copy() for w in gan.generator.weights if "head_" in w.path]  # noqa: E731
    rest = lambda: [w.numpy().copy() for w in gan.generator.weights if "head_" not in w.path]  # noqa: E731
    head_before, rest_before = head(), rest()
    assert head_before and len(rest_before) == len(base.weights)
    real = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
    for _ in range(3):
        gan.train_step(real)
    assert all(np.array_equal(a, b) for a, b in zip(rest_before, rest()))
    assert not all(np.array_equal(a, b) for a, b in zip(head_before, head()))
    assert not np.array_equal(gan.generator(z, training=False), base(z, training=False))


def test_model_card_of_the_shipped_style_states_its_settings_and_scores():
    from gan.model_card import render_model_card

    meta = json.loads((REPO / "weights" / "default" / "style.json").read_text())
    card = render_model_card(meta, notes="## Data\n\nprovenance")
    m = meta["metrics"]
    assert f"FID **{m['fid']:.1f}**" in card and meta["weights"]["generator.weights.h5"]["sha256"] in card
    assert card.rstrip().endswith("provenance")
    for weight in (0.0, 0.001):  # an R1 penalty is named only when the style was trained with one
        other = render_model_card({**meta, "config": {**meta["config"], "d_r1": weight}})
        assert ("R1 penalty on the discriminator, weight 0.001" in other) == (weight > 0)
    lazy = render_model_card({**meta, "config": {**meta["config"], "d_r1": 0.05, "d_r1_every": 4}})
    assert "weight 0.05 (lazy: every 4 steps at 4 times the weight)" in lazy
    assert "(BatchNorm statistics recalibrated at export)" in card
    style = render_model_card({**meta, "config": {**meta["config"], "g_frozen_layers": 5}})
    assert "(BatchNorm statistics recalibrated at export outside the 5 frozen blocks)" in style


def test_model_card_reads_the_truncation_study_against_the_headline_fid():
    from gan.model_card import render_model_card

    meta = json.loads((REPO / "weights" / "default" / "style.json").read_text())
    rows = [{"truncation": t, "fid": fid, "kid": 0.03, "precision": p, "recall": r, "num_fake": 4000,
             "num_real": 10000} for t, fid, p, r in ((1.0, 31.0, 0.61, 0.16), (0.8, 35.0, 0.65, 0.14))]
    meta.update(truncation=1.0, truncation_study={"command": "avatarbot-train truncation", "real": "faces",
                                                  "rule": "the rule", "results": rows},
                metrics={**meta["metrics"], "fid": 29.5, "num_fake": 10000, "truncation": 1.0})
    card = render_model_card(meta)
    assert "From truncation 1 to 0.8: precision 0.610 to 0.650, recall 0.160 to 0.140, FID 31.0 to 35.0; " \
           "the rule keeps 1." in card
    assert "over 4,000 generated images, so it reads higher than over 10,000 for the same generator " \
           "(31.0 against 29.5 at truncation 1)" in card
    meta["metrics"]["num_fake"] = 4000  # the headline figure over as many faces: nothing to explain
    assert "reads higher" not in render_model_card(meta)


def test_wall_time_counts_checkpoint_pauses_but_not_breaks_between_sessions(tmp_path):
    from gan.rundir import RunDir

    run = RunDir(tmp_path)
    assert run.wall_time() is None  # no history yet
    # 0.3 s per logged line (a GPU), a 10 s checkpoint pause, then a 2-hour break before a resume.
    times = [0.3 * i for i in range(10)] + [2.7 + 10.0] + [12.7 + 7200 + 0.3 * i for i in range(10)]
    run.history_file.write_text("".join(json.dumps({"step": i, "time": t}) + "\n" for i, t in enumerate(times)))
    assert run.wall_time() == pytest.approx(0.3 * 9 + 10.0 + 0.3 * 9, abs=0.1)


def test_fine_tuning_with_a_wider_discriminator_keeps_the_generator_and_trains_a_fresh_one(tiny_style):
    """Comparing a wider discriminator starts from the shipped generator: its weights load, the
    discriminator (which cannot) starts fresh, and a generator of another width is still refused."""
    import dataclasses

    from gan.latents import latents_for_seeds
    from gan.model import GAN
    from gan.styles import StyleError, load_generator, load_style_into, read_style

    default = tiny_style / "default"
    config = dataclasses.replace(read_style(default).config, d_channels=16)
    gan = GAN(config)
    gan.compile()
    load_style_into(default, gan)
    base, _ = load_generator(default)
    z = latents_for_seeds(list(range(4)), config.latent_dim)
    np.testing.assert_allclose(gan.generator(z, training=False), base(z, training=False), atol=1e-6)
    real = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
    assert np.isfinite(float(gan.train_step(real)["d_loss"]))
    wider_g = GAN(dataclasses.replace(config, g_channels=16))
    wider_g.compile()
    with pytest.raises(StyleError, match="another architecture"):
        load_style_into(default, wider_g)
