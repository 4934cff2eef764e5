"""The public seed contract: seed -> latent vector, and name -> seed.

These mappings are a promise to users: an avatar must look the same on every machine, platform and
release for the same (seed, style). Do not change them; add a new versioned mapping instead.

* ``latent_for_seed(seed, dim)``: NumPy's PCG64 bit generator seeded with ``seed`` (an integer in
  [0, 2**63)), ``Generator.standard_normal(dim)`` in float64, cast to float32.
* ``seed_for_name(name)``: the name is Unicode-NFC normalised, stripped and case-folded; the first
  8 bytes of SHA-256 over ``b"avatarbot-name:" + name.encode("utf-8")``, read big-endian, shifted
  right by one bit (so the seed fits in [0, 2**63)).
* Truncation ``psi`` in (0, 1] scales the latent towards the mean face: 1.0 keeps the full variety.
* Variation ``i`` of a seed at strength ``s``: ``(z + s * e_i) / sqrt(1 + s**2)`` where ``e_i`` is
  PCG64 seeded with ``SeedSequence([seed, i + 1])``; dividing keeps the latent's scale.
"""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np

MAX_SEED = 2**63  # seeds are integers in [0, MAX_SEED)


def check_seed(seed: int) -> int:
    """Return ``seed`` if it is a valid seed, else raise ``ValueError`` saying why."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, not {type(seed).__name__}")
    if not 0 <= int(seed) < MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED - 1}")
    return int(seed)


def latent_for_seed(seed: int, dim: int) -> np.ndarray:
    """The float32 latent vector of ``seed`` (shape ``(dim,)``)."""
    rng = np.random.Generator(np.random.PCG64(check_seed(seed)))
    return rng.standard_normal(dim).astype(np.float32)


def seed_for_name(name: str) -> int:
    """The stable seed of a name, e.g. ``seed_for_name("Alice")``."""
    key = unicodedata.normalize("NFC", name).strip().casefold()
    if not key:
        raise ValueError("name must not be empty")
    digest = hashlib.sha256(b"avatarbot-name:" + key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def check_truncation(psi: float) -> float:
    """Return ``psi`` if it is a valid truncation, else raise ``ValueError``."""
    psi = float(psi)
    if not 0.05 <= psi <= 1.0:
        raise ValueError("truncation must be between 0.05 and 1.0")
    return psi


def latents_for_seeds(seeds: list[int], dim: int, truncation: float = 1.0) -> np.ndarray:
    """An (N, dim) float32 batch of latents, truncated by ``truncation``."""
    psi = check_truncation(truncation)
    z = np.stack([latent_for_seed(s, dim) for s in seeds]) if seeds else np.zeros((0, dim), np.float32)
    return (z * np.float32(psi)).astype(np.float32)


def variation_latents(seed: int, dim: int, count: int, strength: float = 0.4,
                      truncation: float = 1.0) -> np.ndarray:
    """``count`` latents near the seed's own; ``strength`` in (0, 2] sets how far they stray."""
    if not 0.0 < strength <= 2.0:
        raise ValueError("variation strength must be in (0, 2]")
    z = latent_for_seed(seed, dim).astype(np.float64)
    out = []
    for i in range(count):
        eps = np.random.Generator(np.random.PCG64(np.random.SeedSequence([check_seed(seed), i + 1])))
        out.append((z + strength * eps.standard_normal(dim)) / np.sqrt(1.0 + strength**2))
    return (np.stack(out) * check_truncation(truncation)).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """``steps`` latents on the great circle from ``a`` to ``b`` (both ends included)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = np.dot(a64, b64) / (np.linalg.norm(a64) * np.linalg.norm(b64) + 1e-12)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    ts = np.linspace(0.0, 1.0, steps)
    if omega < 1e-6:
        return np.stack([(1 - t) * a64 + t * b64 for t in ts]).astype(np.float32)
    so = np.sin(omega)
    return np.stack([np.sin((1 - t) * omega) / so * a64 + np.sin(t * omega) / so * b64
                     for t in ts]).astype(np.float32)
