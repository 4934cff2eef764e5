"""Hair and eye colour of 64-px anime faces, read from the pixels (no model).

The faces of ``anime-faces-64`` (and so of every style trained on it) share one layout: cropped by
an anime face detector, the face fills the picture, the hair covers its top band and runs down its
sides, and the eyes sit in a band in the middle, about 20 and 44 pixels from the left, 32 from the
top. The regions below were measured on the real crops (``docs/colours.md``): where saturated, dark
pixels gather on the mean of 5,000 faces, and contact sheets of faces grouped by their label.

* Hair: every pixel of the top band (and, at half weight, of the side strips) gets a colour name
  from its hue, saturation and value; paper-white background and skin get none. The name with the
  most votes is the hair colour; shading and line art are a minority of the band.
* Eyes: pixels near the two eye centres (Gaussian weights), saturated and not too light or dark,
  vote with weight saturation x darkness, so irises count more than blush; pixels close in colour
  to the face's skin (its cheeks) or to its hair are left out, since bangs and skin cover the eye
  band too. Too few votes, or no clear winner, is "unsure" (-1).

Labels are indices into ``HAIR_COLOURS`` and ``EYE_COLOURS``. Everything is vectorised: 1-2 ms a
face on the 2-core CPU (``python -m benchmarks.colours labeller``, 2026-12-05).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HAIR_COLOURS = ("black", "brown", "blonde", "red", "pink", "blue", "green", "purple", "white")
EYE_COLOURS = ("brown", "red", "green", "blue", "purple", "pink")
# Other words people use for the same colours ("white" covers white and silver hair).
ALIASES = {"silver": "white", "grey": "white", "gray": "white", "blond": "blonde", "violet": "purple"}
UNSURE = -1

SIZE = 64
# Hair: the top band, where the hair almost always is, and the side strips, often background.
HAIR_BOX = (slice(1, 15), slice(8, 56))
HAIR_SIDES = ((slice(15, 40), slice(1, 8)), (slice(15, 40), slice(56, 63)))
# Eyes: centres (row, column) and spread, measured on the mean of the real crops.
EYE_CENTRES = ((32.0, 20.5), (32.0, 43.5))
EYE_SIGMA = (4.0, 3.5)
EYE_ROWS = slice(25, 41)
EYE_COLS = (slice(14, 28), slice(37, 51))
SKIN_BOX = (slice(38, 48), slice(24, 40))  # cheeks and nose: the face's own skin colour
EYE_MIN_VOTES = 1.5  # summed vote weight below which the eyes are unsure (closed, hidden, tiny)
EYE_MIN_SHARE = 0.4  # the winning colour's share of the votes below which they are unsure
SKIN_DISTANCE = 14.0  # CIELAB distance under which an eye pixel counts as skin
HAIR_DISTANCE = 10.0  # ... and as hair (bangs over the eyes)


@dataclass(frozen=True)
class ColourLabels:
    """Per face: the hair and eye colour index (``UNSURE`` when unsure) and the winner's vote share."""

    hair: np.ndarray
    hair_share: np.ndarray
    eyes: np.ndarray
    eyes_share: np.ndarray

    def hair_names(self) -> list[str | None]:
        return [HAIR_COLOURS[i] if i >= 0 else None for i in self.hair]

    def eye_names(self) -> list[str | None]:
        return [EYE_COLOURS[i] if i >= 0 else None for i in self.eyes]


def canonical_colour(name: str) -> str:
    """A colour as the user wrote it -> its name here (case, spaces and aliases: "Silver" -> "white")."""
    key = str(name).strip().lower()
    return ALIASES.get(key, key)


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float RGB in [0, 1] -> hue in degrees [0, 360), saturation and value in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    c = mx - mn
    safe = np.where(c > 0, c, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    h = np.where(c > 0, h, 0.0)
    s = np.where(mx > 0, c / np.where(mx > 0, mx, 1.0), 0.0)
    return h, s, mx


def _lab(rgb: np.ndarray) -> np.ndarray:
    """float RGB in [0, 1] (any shape ending in 3) -> CIELAB (L 0-100)."""
    import cv2  # here, not at the top: the CLIs import the colour names without loading OpenCV

    flat = np.ascontiguousarray(rgb.reshape(-1, 1, 3), np.float32)
    return cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(rgb.shape)


def _hair_pixel_names(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Each pixel's hair colour index, or -1 for background paper and skin."""
    i = {name: k for k, name in enumerate(HAIR_COLOURS)}
    paper = (v > 0.93) & (s < 0.07)
    skin = (h >= 5) & (h < 35) & (s >= 0.08) & (s < 0.4) & (v > 0.85)
    dark = (v < 0.3) | ((v < 0.45) & (s < 0.4))
    grey = s < 0.16
    red_hue = (h < 15) | (h >= 340)
    return np.select(
        [paper | skin, dark, grey & (v >= 0.55), grey, red_hue, h < 45, h < 70, h < 170, h < 240, h < 290,
         h < 340],
        [-1, i["black"], i["white"], i["black"],
         # deep reds; light, washed-out reds are pink; dark, dull ones brown
         np.where((s >= 0.55) & (v >= 0.45), i["red"], np.where(v > 0.7, i["pink"], i["brown"])),
         # light yellow-orange is blonde; vivid orange counts as red (ginger); the rest brown
         np.where((v > 0.78) & (h >= 28), i["blonde"],
                  np.where((s > 0.65) & (v > 0.75) & (h < 30), i["red"], i["brown"])),
         np.where(v > 0.6, i["blonde"], i["brown"]),
         i["green"], i["blue"], i["purple"],
         np.where(v > 0.7, i["pink"], i["purple"])]).astype(np.int8)


def _eye_pixel_names(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Each pixel's eye colour index, or -1 where it says nothing (pale, black, skin-like hues)."""
    i = {name: k for k, name in enumerate(EYE_COLOURS)}
    weak = (s < 0.3) | (v < 0.25) | (v > 0.9)  # too dark (lashes, outlines) or pale to tell a hue
    reddish = (h < 20) | (h >= 340)
    orange = (h >= 20) & (h < 70)
    return np.select(
        [weak, reddish & (v >= 0.4) & (s >= 0.5) & ((h < 15) | (h >= 345)), reddish,
         orange & (v < 0.6), orange, h < 170, h < 240, h < 290, h < 340],
        [-1, i["red"], -1, i["brown"], -1, i["green"], i["blue"], i["purple"], i["pink"]]
    ).astype(np.int8)


def _region_weights() -> tuple[np.ndarray, np.ndarray]:
    """(64, 64) vote weights of the hair and eye regions."""
    hair = np.zeros((SIZE, SIZE), np.float32)
    hair[HAIR_BOX] = 1.0
    for box in HAIR_SIDES:
        hair[box] = 0.5
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    eyes = np.zeros((SIZE, SIZE), np.float32)
    for cy, cx in EYE_CENTRES:
        eyes += np.exp(-0.5 * (((yy - cy) / EYE_SIGMA[0]) ** 2 + ((xx - cx) / EYE_SIGMA[1]) ** 2))
    keep = np.zeros((SIZE, SIZE), bool)
    for cols in EYE_COLS:
        keep[EYE_ROWS, cols] = True
    return hair, np.where(keep, eyes, 0.0).astype(np.float32)


_HAIR_W, _EYE_W = _region_weights()
_HAIR_PIX = np.flatnonzero(_HAIR_W.ravel())
_EYE_PIX = np.flatnonzero(_EYE_W.ravel())
_SKIN_PIX = np.ravel_multi_index(np.mgrid[SKIN_BOX].reshape(2, -1), (SIZE, SIZE))


def _votes(names: np.ndarray, weights: np.ndarray, n_colours: int) -> np.ndarray:
    """(N, P) names and (N, P) weights -> (N, n_colours) summed weights per colour."""
    return np.stack([np.where(names == k, weights, 0.0).sum(1) for k in range(n_colours)], 1)


def _label_chunk(faces: np.ndarray) -> tuple[np.ndarray, ...]:
    n = len(faces)
    flat = faces.reshape(n, SIZE * SIZE, 3).astype(np.float32) / 255.0

    hair_rgb = flat[:, _HAIR_PIX]
    hair_names = _hair_pixel_names(*_hsv(hair_rgb))
    hair_votes = _votes(hair_names, np.broadcast_to(_HAIR_W.ravel()[_HAIR_PIX], hair_names.shape), len(HAIR_COLOURS))
    hair_total = hair_votes.sum(1)
    hair = np.where(hair_total >= 0.1 * _HAIR_W.sum(), hair_votes.argmax(1), UNSURE)
    hair_share = hair_votes.max(1) / np.maximum(hair_total, 1e-6)

    # The colour of the hair as drawn (median of the pixels named with the winner), to tell bangs
    # over the eyes from irises.
    hair_lab = _lab(hair_rgb)
    winner = (hair_names == hair[:, None]) & (hair[:, None] >= 0)
    hair_ref = np.full((n, 3), np.nan, np.float32)  # NaN: no hair seen, nothing to leave out
    some = winner.any(1)
    hair_ref[some] = np.nanmedian(np.where(winner[some][..., None], hair_lab[some], np.nan), axis=1)
    skin_ref = np.median(_lab(flat[:, _SKIN_PIX]), axis=1)

    eye_rgb = flat[:, _EYE_PIX]
    h, s, v = _hsv(eye_rgb)
    eye_lab = _lab(eye_rgb)
    not_skin = np.linalg.norm(eye_lab - skin_ref[:, None], axis=-1) > SKIN_DISTANCE
    not_hair = ~(np.linalg.norm(eye_lab - hair_ref[:, None], axis=-1) < HAIR_DISTANCE)  # NaN: no hair
    weights = _EYE_W.ravel()[_EYE_PIX][None] * s * (1.2 - v) * (not_skin & not_hair)
    eye_votes = _votes(_eye_pixel_names(h, s, v), weights, len(EYE_COLOURS))
    eye_total = eye_votes.sum(1)
    eyes_share = eye_votes.max(1) / np.maximum(eye_total, 1e-6)
    eyes = np.where((eye_total >= EYE_MIN_VOTES) & (eyes_share >= EYE_MIN_SHARE), eye_votes.argmax(1), UNSURE)
    return hair, hair_share, eyes, eyes_share


def label_faces(faces: np.ndarray, chunk: int = 1024) -> ColourLabels:
    """(N, H, W, 3) uint8 RGB faces -> their hair and eye colours (other sizes are resized to 64)."""
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[-1] != 3:
        raise ValueError(f"faces must have shape (N, H, W, 3), not {faces.shape}")
    if faces.shape[1:3] != (SIZE, SIZE):
        import cv2

        faces = np.stack([cv2.resize(np.asarray(f, np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
                          for f in faces]) if len(faces) else np.zeros((0, SIZE, SIZE, 3), np.uint8)
    parts = [_label_chunk(faces[i:i + chunk]) for i in range(0, len(faces), chunk)]
    if not parts:
        empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float32)
        return ColourLabels(empty_i, empty_f, empty_i, empty_f)
    hair, hair_share, eyes, eyes_share = (np.concatenate(p) for p in zip(*parts))
    return ColourLabels(hair.astype(np.int64), hair_share.astype(np.float32), eyes.astype(np.int64),
                        eyes_share.astype(np.float32))


def hair_colour(face: np.ndarray) -> str | None:
    """One (H, W, 3) uint8 face's hair colour, or None when it cannot tell."""
    return label_faces(np.asarray(face)[None]).hair_names()[0]


def eye_colour(face: np.ndarray) -> str | None:
    """One (H, W, 3) uint8 face's eye colour, or None when it cannot tell (closed, hidden eyes)."""
    return label_faces(np.asarray(face)[None]).eye_names()[0]
