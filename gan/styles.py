"""Style folders on disk: export from a run, verify, and load weights into networks built in code.

A style folder (``weights/<style>/``) holds::

    generator.weights.h5       generator weights only (Keras weights file, no architecture)
    discriminator.weights.h5   optional: discriminator weights, for fine-tuning custom styles
    style.json                 config, latent and image size, sha256 of each weights file,
                               training summary, FID/KID
    MODEL_CARD.md              data, recipe, figures

Weights are loaded into networks that ``gan.networks`` builds from ``style.json``'s config; no
model is ever deserialised from a file, and a file whose hash or shapes do not match is refused.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from gan.config import GANConfig
from gan.model_card import write_model_card

if TYPE_CHECKING:  # keras (and TensorFlow) load only when weights do: listing styles stays instant
    import keras

log = logging.getLogger(__name__)

STYLE_FORMAT = 1
GENERATOR_FILE = "generator.weights.h5"
DISCRIMINATOR_FILE = "discriminator.weights.h5"
DIRECTIONS_FILE = "directions.npz"  # optional hair and eye colour directions (gan.edits)
# Ends in \Z, not $ (which also matches before a trailing newline), so that callers using match() are
# exact too; check_style_name uses fullmatch.
STYLE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}\Z")


class StyleError(Exception):
    """A style folder is missing, corrupt or does not match its description (one clear line)."""


def check_style_name(name: str) -> str:
    """Return ``name`` if it is a valid style slug (lowercase letters, digits, '-', max 32)."""
    if not isinstance(name, str) or not STYLE_NAME.fullmatch(name):
        raise StyleError(f"invalid style name {name!r}: use 1-32 lowercase letters, digits and '-', "
                         "starting with a letter or digit")
    return name


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Build layers under the Keras dtype policy ``name`` whatever the global one is."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_policy():
    """Build layers in float32 whatever the global mixed-precision policy is."""
    return precision_policy("float32")


@dataclass(frozen=True)
class StyleInfo:
    """A verified style folder's description (``style.json``)."""

    name: str
    path: Path
    config: GANConfig
    meta: dict[str, Any]

    @property
    def generator_sha256(self) -> str:
        return self.meta["weights"][GENERATOR_FILE]["sha256"]

    @property
    def has_discriminator(self) -> bool:
        return DISCRIMINATOR_FILE in self.meta.get("weights", {})

    def description(self, language: str = "en") -> str:
        """The style's one line in ``language`` when ``style.json`` has it under ``descriptions``
        (keyed by language code, e.g. ``"ja"``), else its ``description``."""
        return self.translated_descriptions.get(language) or str(self.meta.get("description", ""))

    @property
    def translated_descriptions(self) -> dict[str, str]:
        """``style.json``'s ``descriptions``: the one line in other languages, by language code."""
        translated = self.meta.get("descriptions")
        if not isinstance(translated, dict):
            return {}
        return {lang: text for lang, text in translated.items() if isinstance(text, str) and text.strip()}

    @property
    def default_truncation(self) -> float:
        """The truncation faces get when the user gives none: ``style.json``'s ``truncation``
        (chosen by ``avatarbot-train truncation``), else 1.0."""
        return float(self.meta.get("truncation", 1.0))


def read_style(folder: str | os.PathLike, verify_hashes: bool = True) -> StyleInfo:
    """Read and check ``style.json`` and the hashes of the weights it lists."""
    folder = Path(folder)
    meta_path = folder / "style.json"
    if not folder.is_dir():
        raise StyleError(f"style folder not found: {folder}")
    if not meta_path.is_file():
        raise StyleError(f"{meta_path} is missing")
    try:
        meta = json.loads(meta_path.read_text())
        config = GANConfig.from_dict(meta["config"])
        weights = meta["weights"]
        weights[GENERATOR_FILE]["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
        raise StyleError(f"{meta_path} is corrupt or incomplete ({exc})") from None
    if "truncation" in meta:
        from gan.latents import check_truncation

        try:
            check_truncation(meta["truncation"])
        except (TypeError, ValueError):
            raise StyleError(f"{meta_path}: truncation {meta['truncation']!r} is not between 0.05 and 1") from None
    if meta.get("format") != STYLE_FORMAT:
        raise StyleError(f"{meta_path} has format {meta.get('format')!r}; this version reads {STYLE_FORMAT}")
    for filename, entry in weights.items():
        if filename not in (GENERATOR_FILE, DISCRIMINATOR_FILE):
            raise StyleError(f"{meta_path} lists an unexpected file {filename!r}")
        path = folder / filename
        if not path.is_file():
            raise StyleError(f"{path} is missing")
        if verify_hashes and sha256_file(path) != entry.get("sha256"):
            raise StyleError(f"{path} does not match the sha256 in style.json (corrupt or modified file)")
    directions = meta.get("directions")
    if directions is not None:  # listed under its own key: "weights" holds network files only
        path = folder / DIRECTIONS_FILE
        if not isinstance(directions, dict) or not path.is_file():
            raise StyleError(f"{meta_path} lists colour directions, but {path} is missing or undescribed")
        if verify_hashes and sha256_file(path) != directions.get("sha256"):
            raise StyleError(f"{path} does not match the sha256 in style.json (corrupt or modified file)")
    return StyleInfo(name=meta.get("name", folder.name), path=folder, config=config, meta=meta)


def _load_weights(model: keras.Model, path: Path) -> None:
    try:
        # Keras only warns when part of a file does not match and keeps fresh weights for it;
        # a half-loaded network must be refused instead.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.load_weights(path)
    except Exception as exc:  # noqa: BLE001 - h5py/Keras raise many types for a bad file
        raise StyleError(f"{path} does not fit the architecture in style.json ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200]})") from None


def load_generator(folder: str | os.PathLike) -> tuple[keras.Model, StyleInfo]:
    """Build the style's generator in float32 and load its verified weights."""
    from gan.networks import build_generator

    info = read_style(folder)
    with float32_policy():
        generator = build_generator(info.config)
    _load_weights(generator, info.path / GENERATOR_FILE)
    return generator, info


def load_style_into(folder: str | os.PathLike, gan) -> StyleInfo:
    """Load a style's generator (and discriminator, if shipped) into a ``GAN`` for fine-tuning."""
    info = read_style(folder)
    # Training-only settings (learning rates, augmentation, frozen layers) may differ; shapes may not.
    # A wider or narrower discriminator is allowed: it starts fresh against the loaded generator.
    arch = ("preset", "latent_dim", "image_size", "g_channels")
    head = ("g_head", "g_palette")
    if any(getattr(info.config, k) != getattr(gan.config, k) for k in arch) or (
            info.config.g_head and any(getattr(info.config, k) != getattr(gan.config, k) for k in head)):
        raise StyleError(f"style {info.name!r} has another architecture than this run")
    if gan.config.g_head and not info.config.g_head:
        _load_base_generator(gan.generator, info)  # a new style head on a style without one
    else:
        _load_weights(gan.generator, info.path / GENERATOR_FILE)
    same_d = all(getattr(info.config, k) == getattr(gan.config, k) for k in ("d_channels", "d_norm"))
    if info.has_discriminator and same_d:
        _load_weights(gan.discriminator, info.path / DISCRIMINATOR_FILE)
    elif info.has_discriminator:
        log.info("style %r has another discriminator (d_channels %d, d_norm %s): it starts fresh",
                 info.name, info.config.d_channels, info.config.d_norm)
    return info


def load_pretrained(gan, source: str | os.PathLike) -> StyleInfo | None:
    """Start ``gan`` (a ``GAN``, or the JAX trainer's networks) from pretrained networks: a run
    directory's newest checkpoint (networks only, not optimizer state) or a style folder
    (hash-verified weights). The EMA generator starts as a copy of the generator. Returns the
    style's ``StyleInfo`` for a style folder, else None."""
    from gan import checkpoint as ckpt
    from gan.rundir import RunDir

    latest = RunDir(source).latest_checkpoint()
    info = None
    if latest is not None:
        ckpt.load_checkpoint(gan, latest, groups=ckpt.NETWORKS)
    else:
        info = load_style_into(source, gan)
    if gan.ema_generator is not None:
        gan.ema_generator.set_weights(gan.generator.get_weights())
    log.info("initialised weights from %s", source)
    return info


def _load_base_generator(generator: keras.Model, info: StyleInfo) -> None:
    """Load a style without a style head into the base layers of a generator with one; the head
    keeps its fresh weights (which start by drawing the base faces unchanged)."""
    from gan.networks import base_generator_layers, build_generator

    plain = build_generator(info.config)
    _load_weights(plain, info.path / GENERATOR_FILE)
    sources = [layer for layer in plain.layers if layer.weights]
    targets = [layer for layer in base_generator_layers(generator) if layer.weights]
    if len(sources) != len(targets):
        raise StyleError(f"style {info.name!r} has another architecture than this run")
    for source, target in zip(sources, targets):
        target.set_weights(source.get_weights())


def update_style_json(folder: str | os.PathLike, **changes: Any) -> dict:
    """Set top-level entries of a style folder's ``style.json`` (atomically; the weights and their
    hashes untouched) and return the new contents."""
    path = Path(folder) / "style.json"
    meta = {**json.loads(path.read_text()), **changes}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return meta


def record_in_style(folder: str | os.PathLike, **changes: Any) -> Path | None:
    """``update_style_json``, then redraw the folder's ``MODEL_CARD.md`` with its notes kept. Returns
    the card, or None when there is none or it predates the notes marker (left alone, with a warning)."""
    update_style_json(folder, **changes)
    card = Path(folder) / "MODEL_CARD.md"
    if not card.exists():
        return None
    try:
        return write_model_card(folder)
    except ValueError as exc:
        log.warning("model card not redrawn: %s", exc)
        return None


def list_styles(root: str | os.PathLike) -> list[StyleInfo]:
    """Every valid style under ``root`` (hashes unchecked, for speed); broken ones are logged."""
    root = Path(root)
    found = []
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (folder / "style.json").exists():
            continue
        try:
            found.append(read_style(folder, verify_hashes=False))
        except StyleError as exc:
            log.warning("ignoring style folder %s: %s", folder, exc)
    return found


def write_style(folder: str | os.PathLike, name: str, config: GANConfig, generator: keras.Model,
                discriminator: keras.Model | None = None, training: dict | None = None,
                metrics: dict | None = None, description: str = "", notes: str = "",
                comparison: list[dict] | None = None, descriptions: dict[str, str] | None = None) -> Path:
    """Write a complete style folder atomically: built in a temporary folder, then renamed.

    ``description`` is the style's one line (English); ``descriptions`` the same line in other
    languages, by language code (shown to chat users in their language).

    Besides the weights and ``style.json`` it holds ``samples.png`` (seeds 0-15) and
    ``MODEL_CARD.md`` (with ``notes`` and a preset ``comparison`` table when given; the comparison
    rows are kept in ``style.json``, so a redrawn card keeps the table).

    An existing folder of the same name is replaced only once the new one is complete.
    """
    check_style_name(name)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        generator.save_weights(tmp / GENERATOR_FILE)
        files = [GENERATOR_FILE]
        if discriminator is not None:
            discriminator.save_weights(tmp / DISCRIMINATOR_FILE)
            files.append(DISCRIMINATOR_FILE)
        meta = {
            "format": STYLE_FORMAT,
            "name": name,
            "description": description,
            **({"descriptions": dict(descriptions)} if descriptions else {}),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": config.to_dict(),
            "latent_dim": config.latent_dim,
            "image_size": config.image_size,
            "weights": {f: {"sha256": sha256_file(tmp / f), "bytes": (tmp / f).stat().st_size} for f in files},
            "training": training or {},
            "metrics": metrics or {},
            **({"comparison": list(comparison)} if comparison else {}),
        }
        (tmp / "style.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        _sample_grid(generator, config).save(tmp / "samples.png")
        write_model_card(tmp, notes)
        backup = None
        if folder.exists():
            backup = folder.with_name(f".{name}-old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(folder, backup)
        tmp.chmod(0o755)  # mkdtemp makes it private; a style folder is shared like any other
        os.replace(tmp, folder)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _sample_grid(generator: keras.Model, config: GANConfig):
    from gan.imaging import grid, to_uint8
    from gan.latents import latents_for_seeds

    z = latents_for_seeds(list(range(16)), config.latent_dim)
    return grid(to_uint8(generator(z, training=False).numpy()), cols=8, cell=96)


def export_run(run_dir: str | os.PathLike, name: str, weights_dir: str | os.PathLike = "weights",
               metrics_file: str | None = None, description: str = "",
               include_discriminator: bool = True, notes: str = "",
               comparison: list[dict] | None = None, step: int | None = None,
               descriptions: dict[str, str] | None = None) -> Path:
    """Export a run's newest checkpoint (or the one of ``step``) as ``weights_dir/name``: the EMA
    generator when the run has one, with its BatchNorm statistics recalibrated."""
    from gan import checkpoint as ckpt
    from gan.model import GAN
    from gan.networks import recalibrate_batchnorm
    from gan.rundir import RunDir
    from gan.runtime import tensorflow_machine

    run = RunDir(run_dir)
    check_style_name(name)
    if not run.is_run():
        raise StyleError(f"{run_dir} is not a training run (no options.json)")
    options = run.load_options()
    latest = run.checkpoint(step)
    if latest is None:
        raise StyleError(f"{run_dir} has no checkpoint{f' of step {step}' if step is not None else ''} to export")
    with float32_policy():
        gan = GAN(options.model)
        gan.compile()
        # The networks only: optimizer state is not exported (and may differ between versions).
        ckpt.load_checkpoint(gan, latest, groups=ckpt.NETWORKS)
    step = ckpt.checkpoint_step(latest)
    generator = gan.inference_generator()
    if generator is gan.ema_generator:
        recalibrate_batchnorm(generator, options.model.latent_dim, frozen_blocks=options.model.g_frozen_layers)
    metrics = json.loads(Path(metrics_file).read_text()) if metrics_file else {}
    training = {
        "steps": step,
        "images_seen": step * options.batch_size,
        "batch_size": options.batch_size,
        "data": options.data,
        "mixed_precision": options.mixed_precision,
        "init_from": options.init_from,
        "wall_time_s": run.wall_time(),
        # The machine its history names, else this one (a run from before the trainers named theirs).
        "hardware": run.trained_on() or tensorflow_machine(),
        "checkpoint": latest.name,
    }
    return write_style(Path(weights_dir) / name, name, options.model, generator,
                       gan.discriminator if include_discriminator else None, training, metrics, description,
                       notes, comparison, descriptions)

