"""FID and KID with Inception-v3 pool features.

* FID (Heusel et al. 2017): Frechet distance between Gaussians fitted to the two feature sets.
* KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over random subsets; reported with its standard deviation.
* Precision and recall (Kynkaanniemi et al. 2019): the share of generated images inside the real
  images' k-NN manifold (how many faces look real) and of real images inside the generated ones'
  (how much of the data's variety the generator covers), on the same features.

Images are resized to 299x299 (bilinear) and scaled to [-1, 1], as Inception-v3 expects.
``inception_weights`` names a local no-top weights file; without it Keras downloads its ImageNet
weights (the usual choice for users with internet access).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from gan.runtime import cache_dir

log = logging.getLogger(__name__)

FEATURE_DIM = 2048


class InceptionFeatures:
    """Batched 2048-d pool features of uint8 RGB images of any size."""

    def __init__(self, weights: str | os.PathLike | None = None, batch_size: int = 100,
                 progress: bool = False) -> None:
        import keras

        from gan.styles import float32_policy

        if weights is not None and not Path(weights).is_file():
            raise FileNotFoundError(f"Inception weights not found: {weights}")
        with float32_policy():
            self.model = keras.applications.InceptionV3(
                include_top=False, weights=str(weights) if weights else "imagenet",
                pooling="avg", input_shape=(299, 299, 3))
        self.weights_id = Path(weights).name if weights else "imagenet"
        self.batch_size = batch_size
        # Inception-v3 at 299x299 is slow on a CPU (minutes per thousand images): show how far it is.
        self.progress = progress
        # One graph for every batch and image size: a quality gate measures batches of several sizes,
        # and each new shape traced Inception again (the same features either way).
        self._call = tf.function(self._features, input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8)])

    def _features(self, images: tf.Tensor) -> tf.Tensor:
        x = tf.image.resize(tf.cast(images, tf.float32), (299, 299), method="bilinear")
        return self.model(x / 127.5 - 1.0, training=False)

    def __call__(self, images: np.ndarray, desc: str = "features") -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, 2048) float64 features; ``desc`` labels the progress bar."""
        from tqdm import tqdm

        out = []
        with tqdm(total=len(images), desc=desc, unit="img", disable=not self.progress,
                  dynamic_ncols=True) as bar:
            for i in range(0, len(images), self.batch_size):
                out.append(self._call(tf.constant(images[i:i + self.batch_size])).numpy())
                bar.update(len(out[-1]))
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, FEATURE_DIM))


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet Inception Distance between two (N, D) feature sets."""
    mu1, mu2 = a.mean(0), b.mean(0)
    if max(len(a), len(b)) <= a.shape[1]:
        # Fewer images than dimensions: with the centred sets A and B, S1 = A'A/(n1-1) and
        # S2 = B'B/(n2-1), the non-zero eigenvalues of S1 S2 are the squared singular values of
        # A B'/sqrt((n1-1)(n2-1)), so Tr(sqrt(S1 S2)) is their sum: an (n1, n2) problem instead of
        # two (D, D) eigendecompositions, seconds for D = 2048 on a small CPU.
        ca, cb = a - mu1, b - mu2
        n1, n2 = len(a) - 1, len(b) - 1
        trace1, trace2 = (ca * ca).sum() / n1, (cb * cb).sum() / n2
        covmean_trace = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(n1 * n2)
    else:
        s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        r1 = _sqrt_psd(s1)
        # Tr(sqrt(S1 S2)) = Tr(sqrt(sqrt(S1) S2 sqrt(S1))), the latter symmetric PSD: use eigh.
        covmean_trace = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
        trace1, trace2 = np.trace(s1), np.trace(s2)
    return float(((mu1 - mu2) ** 2).sum() + trace1 + trace2 - 2 * covmean_trace)


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (mean, std over subsets) between two (N, D) feature sets."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least two images in each set")
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                      + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances, in float64 for the norms' sake."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    d = (a64 ** 2).sum(1)[:, None] + (b64 ** 2).sum(1)[None, :] - 2 * (a64 @ b64.T)
    return np.maximum(d, 0)


def _knn_radii(x: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """Squared distance of each row of ``x`` to its k-th nearest other row."""
    radii = np.empty(len(x))
    for i in range(0, len(x), chunk):
        d = _squared_distances(x[i:i + chunk], x)
        radii[i:i + chunk] = np.partition(d, k, axis=1)[:, k]  # column 0 is the row itself
    return radii


def precision_recall(fake: np.ndarray, real: np.ndarray, k: int = 3, chunk: int = 1000) -> tuple[float, float]:
    """k-NN precision and recall of (N, D) generated features against (M, D) real ones.

    Precision: the share of generated samples within the k-NN radius of some real sample; recall:
    the share of real samples within the k-NN radius of some generated sample."""
    if min(len(fake), len(real)) <= k:
        raise ValueError(f"precision and recall need more than k={k} images in each set")
    real_radii, fake_radii = _knn_radii(real, k, chunk), _knn_radii(fake, k, chunk)
    fake_inside = np.zeros(len(fake), bool)
    real_inside = np.zeros(len(real), bool)
    for i in range(0, len(fake), chunk):
        d = _squared_distances(fake[i:i + chunk], real)
        fake_inside[i:i + chunk] = (d <= real_radii[None, :]).any(1)
        real_inside |= (d <= fake_radii[i:i + chunk, None]).any(0)
    return float(fake_inside.mean()), float(real_inside.mean())


def _cache_file(key: "hashlib._Hash") -> Path:
    """The file that holds the features of a cache key."""
    return cache_dir("features") / f"{key.hexdigest()[:24]}.npy"


def _cached(path: Path | None, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The features in ``path``, else ``compute()``'s, then saved there (no cache when ``path`` is
    None). The file appears whole or not at all, so two jobs measuring at once cannot read half of
    one, and a damaged file is measured again."""
    if path is not None:
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("features cache %s unreadable (%s): measuring again", path, exc)
    feats = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial")
        with partial.open("wb") as f:
            np.save(f, feats, allow_pickle=False)
        os.replace(partial, path)
    return feats


def _folder_key(folder: Path, n: int, weights_id: str) -> "hashlib._Hash":
    """The cache key of a folder's first ``n`` images.

    The key is the files' relative names and contents, not the folder's path or the files' times:
    a copied, moved or re-provisioned dataset keeps its cache (10,000 images take minutes on a
    CPU), while any changed picture gives a new key."""
    h = hashlib.sha256(f"{n}|{weights_id}".encode())
    for p in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{p.relative_to(folder).as_posix()}\0".encode())
        with p.open("rb") as f:  # streamed: a stray large file in the folder is not read whole
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h


def folder_features(folder: str | os.PathLike, n: int, extractor: InceptionFeatures,
                    cache: bool = True) -> np.ndarray:
    """Features of the first ``n`` images of a folder (cached on disk by folder content)."""
    from gan.data import load_folder

    folder = Path(folder)

    def measure() -> np.ndarray:
        images, stats = load_folder(folder, 64, max_images=n)
        log.info("real images: %s", stats.summary())
        return extractor(images, desc="real features")

    return _cached(_cache_file(_folder_key(folder, n, extractor.weights_id)) if cache else None, measure)


def style_features(style_dir: str | os.PathLike, n: int, extractor: InceptionFeatures,
                   truncation: float = 1.0, cache: bool = True) -> np.ndarray:
    """Features of a style folder's faces of seeds 0..n-1, cached on disk by the style's config and
    generator weights: every custom style's quality gate compares against the same default style,
    whose 150 faces take half a minute of Inception on 2 CPU cores."""
    from gan.inference import AvatarGenerator
    from gan.styles import read_style

    def measure() -> np.ndarray:
        faces = AvatarGenerator.load(style_dir).generate(list(range(n)), truncation)
        return extractor(faces, desc="style features")

    path = None
    if cache:
        info = read_style(style_dir)
        config = json.dumps(info.config.to_dict(), sort_keys=True)
        key = f"style|{config}|{info.generator_sha256}|{n}|{truncation}|{extractor.weights_id}"
        path = _cache_file(hashlib.sha256(key.encode()))
    return _cached(path, measure)


def _fake_images(source: Path, n: int, truncation: float, step: int | None = None) -> tuple[np.ndarray, dict]:
    """Images from a style folder, a run directory (newest checkpoint) or a folder of images."""
    from gan.data import load_folder
    from gan.inference import AvatarGenerator
    from gan.rundir import RunDir

    if (source / "style.json").exists():
        gen = AvatarGenerator.load(source)
        return gen.generate(list(range(n)), truncation), {"style": gen.style,
                                                          "weights_sha256": gen.weights_sha256}
    if RunDir(source).is_run():
        import tempfile

        from gan.styles import export_run

        with tempfile.TemporaryDirectory() as tmp:
            folder = export_run(source, "eval", tmp, include_discriminator=False, step=step)
            images, _ = _fake_images(folder, n, truncation)
            meta = json.loads((folder / "style.json").read_text())
        return images, {"run": str(source), "steps": meta["training"]["steps"],
                        "images_seen": meta["training"]["images_seen"]}
    if source.is_dir():
        images, _ = load_folder(source, 64, max_images=n)
        return images, {"folder": str(source)}
    raise FileNotFoundError(f"not a style folder, run directory or image folder: {source}")


def evaluate_generator_folder(source: str | os.PathLike, real: str | os.PathLike, n_fake: int = 10_000,
                              n_real: int = 10_000, inception_weights: str | None = None,
                              batch_size: int = 100, truncation: float = 1.0, step: int | None = None,
                              progress: bool = False) -> dict:
    """FID and KID of ``source`` (style, run or image folder) against a folder of real images.

    For a run directory, ``step`` picks a checkpoint other than the newest; ``progress`` shows a
    progress bar while features are extracted."""
    source, real = Path(source), Path(real)
    if not real.is_dir():
        raise FileNotFoundError(f"real image folder not found: {real}")
    extractor = InceptionFeatures(inception_weights, batch_size, progress=progress)
    real_feats = folder_features(real, n_real, extractor)
    images, about = _fake_images(source, n_fake, truncation, step)
    return {**about, **feature_scores(extractor(images, desc="generated features"), real_feats),
            "truncation": truncation, "real": str(real), "inception": extractor.weights_id}


def feature_scores(fake_feats: np.ndarray, real_feats: np.ndarray) -> dict:
    """FID, KID (with its std), k-NN precision and recall of two feature sets, rounded for reports."""
    kid_mean, kid_std = kid(fake_feats, real_feats)
    precision, recall = precision_recall(fake_feats, real_feats)
    return {
        "fid": round(fid(fake_feats, real_feats), 3),
        "kid": round(kid_mean, 5),
        "kid_std": round(kid_std, 5),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "num_fake": len(fake_feats),
        "num_real": len(real_feats),
    }
