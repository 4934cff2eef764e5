"""Hair and eye colour edits: directions in a style's latent space, and the rule that applies them.

A style may ship ``directions.npz`` (``avatarbot-train directions STYLE --write`` fits it, in the
manner of InterFaceGAN, Shen et al. 2020): for each colour of each kind (``hair``, ``eyes``) a
linear one-vs-rest classifier on the latents, kept as its unit normal ``n`` and offset ``b``, so
that ``n . z + b`` is the signed distance of a latent from the classifier's boundary, plus:

* ``target``: how far past its boundary an edit brings a latent, calibrated per colour when fitting;
* ``steer``: the unit direction a latent moves along for that classifier: its normal with every
  normal of the other kind projected out, so that a hair edit leaves all eye scores as they were
  and an eye edit all hair scores (a hair edit made first stays made). Styles fitted before this
  rule steer hair along the hair normals themselves; ``_Move`` handles both.

The rule, for ``hair`` first and then ``eyes``: the latent moves by the smallest combination of
steering directions after which the asked colour's distance is at least its target and every other
colour's of that kind at most zero (``_Move``). One-vs-rest boundaries alone would push a "middle"
colour such as brown hair through to its neighbours (blonde, red); asking for the other
classifiers to say no keeps the latent inside the colour's region. A latent already there does not
move (its face is left alone). Latents are edited one by one in float64, the dot products exactly
rounded (``math.fsum``), so a face is the same alone or in any batch.

``style.json`` describes the file under ``"directions"`` (its sha256, the colours, the rule's
targets, the fitting command); ``read_style`` checks the hash along with the weights', and
``load_directions`` reads the arrays with ``allow_pickle=False`` and checks their shapes.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gan.colours import canonical_colour
from gan.styles import DIRECTIONS_FILE, StyleError, StyleInfo

KINDS = ("hair", "eyes")
FIELDS = ("colours", "normals", "offsets", "targets", "steer")


@dataclass(frozen=True)
class Directions:
    """A style's colour directions (``directions.npz``), by kind: ``colours[kind]`` names the rows of
    the (K, D) ``normals`` and ``steer`` and of the (K,) ``offsets`` and ``targets``."""

    colours: dict[str, tuple[str, ...]]
    normals: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    steer: dict[str, np.ndarray]
    sha256: str = ""

    def check(self, kind: str, colour: str) -> str:
        """``colour`` as named in this style (aliases such as "silver" resolved), or ``ValueError``
        naming the choices."""
        name = canonical_colour(colour)
        if name not in self.colours[kind]:
            raise ValueError(f"unknown {kind} colour {colour!r}: choose one of {', '.join(self.colours[kind])}")
        return name

    def distances(self, kind: str, z: np.ndarray) -> np.ndarray:
        """(N, K) signed distances of (N, D) latents from each colour's boundary."""
        z = np.asarray(z, np.float64)
        return np.array([_dots(self.normals[kind] * row) + self.offsets[kind] for row in z]).reshape(len(z), -1)

    def apply(self, z: np.ndarray, hair: str | None = None, eyes: str | None = None) -> np.ndarray:
        """(N, D) float32 latents with the hair and/or eye colour edit applied (see the module doc)."""
        out = np.array(z, np.float64)
        for kind, colour in (("hair", hair), ("eyes", eyes)):
            if colour is None:
                continue
            k = self.colours[kind].index(self.check(kind, colour))
            move = _Move(self.normals[kind], self.offsets[kind], self.steer[kind], k, self.targets[kind][k])
            for i in range(len(out)):  # one by one: a latent's edit never depends on its batch
                out[i] = move(out[i])
        return out.astype(np.float32)


class _Move:
    """The smallest move along the steering directions that brings a latent into colour ``k``'s
    region: its distance from ``k``'s boundary at least ``target``, from every other colour's at
    most zero.

    With constraint rows ``a_j = sign_j * n_j`` and moves ``delta = sum_j lambda_j * b_j``, where
    ``b_j = sign_j * (steer_j . n_j) * steer_j`` (for hair ``b_j = a_j``: a Euclidean projection onto
    the region), the multipliers solve a non-negative least-squares problem (the dual of the
    projection; Lawson and Hanson's algorithm, exact in a finite number of steps)."""

    def __init__(self, normals: np.ndarray, offsets: np.ndarray, steer: np.ndarray, k: int, target: float) -> None:
        self.normals = normals
        self.sign = np.where(np.arange(len(normals)) == k, 1.0, -1.0)
        # Constraint j: sign_j * (n_j . z + b_j) >= floor_j, i.e. gap_j = floor_j - sign_j * n_j . z <= 0.
        self.floor = np.where(self.sign > 0, target, 0.0) - self.sign * offsets
        self.rows = (self.sign * _dots(steer * normals))[:, None] * steer
        # b = rows.T @ lambda meets rows_j . b = gap_j for the active constraints: the NNLS target
        # is rows.T @ solve(rows @ rows.T, gaps).
        self.pinv = np.linalg.solve(self.rows @ self.rows.T, self.rows).T

    def __call__(self, z: np.ndarray) -> np.ndarray:
        from scipy.optimize import nnls

        gaps = self.floor - self.sign * _dots(self.normals * z)
        if gaps.max() <= 0:
            return z  # already that colour, and no other: the face is left alone
        lam, _ = nnls(self.rows.T, self.pinv @ gaps)
        return z + (self.rows * lam[:, None]).sum(0)


def _dots(products: np.ndarray) -> np.ndarray:
    """Row sums of elementwise products, exactly rounded (``math.fsum``): dot products that come
    out the same bits whatever the batch, machine or BLAS."""
    return np.array([math.fsum(row) for row in products.tolist()])


def save_directions(path: str | Path, directions: Directions) -> str:
    """Write ``directions`` as an .npz (no pickles) and return the file's sha256."""
    arrays = {}
    for kind in KINDS:
        arrays[f"{kind}_colours"] = np.array(directions.colours[kind], dtype="U16")
        for field in FIELDS[1:]:
            arrays[f"{kind}_{field}"] = np.asarray(getattr(directions, field)[kind], np.float64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load_directions(info: StyleInfo) -> Directions | None:
    """The verified directions of a style folder, or None when it ships none (``StyleError`` for a
    file that is missing, modified or malformed)."""
    entry = info.meta.get("directions")
    if not entry:
        return None
    path = info.path / DIRECTIONS_FILE
    try:
        data = path.read_bytes()
    except OSError:
        raise StyleError(f"{path} is missing") from None
    sha = hashlib.sha256(data).hexdigest()
    if sha != entry.get("sha256"):
        raise StyleError(f"{path} does not match the sha256 in style.json (corrupt or modified file)")
    dim = info.config.latent_dim
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            parts = {f"{kind}_{field}": npz[f"{kind}_{field}"] for kind in KINDS for field in FIELDS}
        directions = Directions(
            colours={kind: tuple(str(c) for c in parts[f"{kind}_colours"]) for kind in KINDS},
            **{field: {kind: np.asarray(parts[f"{kind}_{field}"], np.float64) for kind in KINDS}
               for field in FIELDS[1:]},
            sha256=sha)
        for kind in KINDS:
            k = len(directions.colours[kind])
            shapes = [directions.normals[kind].shape, directions.steer[kind].shape,
                      directions.offsets[kind].shape, directions.targets[kind].shape]
            if shapes != [(k, dim), (k, dim), (k,), (k,)]:
                raise ValueError(f"{kind} arrays of shapes {shapes} for {k} colours and latent size {dim}")
            if list(directions.colours[kind]) != list(entry.get(kind, [])):
                raise ValueError(f"its {kind} colours differ from style.json's")
    except (KeyError, ValueError, OSError) as exc:
        raise StyleError(f"{path} is malformed ({exc})") from None
    return directions


def edit_metadata(directions: Directions | None, hair: str | None, eyes: str | None) -> dict[str, str]:
    """PNG metadata naming an edit (and the directions file it used), empty without one."""
    if directions is None or (hair is None and eyes is None):
        return {}
    meta = {"hair": directions.check("hair", hair)} if hair is not None else {}
    if eyes is not None:
        meta["eyes"] = directions.check("eyes", eyes)
    return {**meta, "directions_sha256": directions.sha256}
