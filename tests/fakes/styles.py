"""A tiny style folder for tests: the real architecture at 8 channels, random weights."""

from __future__ import annotations

from pathlib import Path


def make_tiny_styles(root: Path, names: tuple[str, ...] = ("default",)) -> Path:
    """Write one tiny random-weights style per name under ``root``; returns ``root``."""
    import keras

    from gan.config import GANConfig
    from gan.networks import build_generator
    from gan.styles import float32_policy, write_style

    cfg = GANConfig.preset_config("improved", g_channels=8, d_channels=8, latent_dim=128)
    for i, name in enumerate(names):
        keras.utils.set_random_seed(i)
        with float32_policy():
            generator = build_generator(cfg)
        write_style(root / name, name, cfg, generator, description=f"tiny test style {name}",
                    descriptions={"ja": f"テスト用の小さなスタイル {name}"})
    return root


def make_tiny_upscaler(folder: Path, scale: int) -> Path:
    """Write an upscaler folder holding the real student architecture at 4 channels, random weights."""
    import keras

    from gan.student import StudentConfig, build_student
    from gan.styles import float32_policy
    from gan.upscalers import write_upscaler

    config = StudentConfig(channels=4, blocks=0, scale=scale)
    keras.utils.set_random_seed(scale)
    with float32_policy():
        student = build_student(config)
    write_upscaler(folder, student, "student", scale, config=config.to_dict())
    return folder
