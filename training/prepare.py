"""Data-set preparation and safe ingestion of user uploads.

``prepare_dataset`` turns a folder (walked recursively) or a zip archive of pictures into a clean
training set: square ``size`` x ``size`` RGB PNG files named ``000000.png``, ``000001.png``, ... in an
empty output folder. The same code ingests the zip a server admin uploads to train a custom style
(``ingest_zip_bytes``), so it treats every input as hostile:

* zip archives are never extracted with ``extract``/``extractall``; member names are never used to
  build a path. The archive size, the member count and the declared uncompressed total are checked
  before anything is read, each member is read with a hard byte cap, and the bytes actually read are
  counted (zip bombs, lying headers);
* the entry count is read from the archive's end-of-central-directory record (ZIP64 too), and the
  directory's headers are counted up to the limit, before ``zipfile`` parses the directory: an archive
  of a million empty entries is refused before a million ``ZipInfo`` objects are made;
* each candidate is identified by Pillow from its bytes, not its file name, and Pillow tries only the
  JPEG, PNG and WEBP decoders; a large JPEG is decoded at a reduced size (``Image.draft``: 1/2, 1/4
  or 1/8, done by the JPEG decoder itself); the pixel count of what will be decoded is checked from
  the header before decoding (decompression bombs);
* corrupt files are counted and skipped, never a crash.

In the bot an upload is ingested in a child process with a memory cap and a time limit
(``training.ingest``), so even a decoder bug or a bomb these checks miss cannot slow the replies.

Why each file was dropped is counted in a ``PrepareReport``, whose ``summary()`` fits a chat message.
Only Pillow, numpy and (for the optional face crop) OpenCV are needed: no TensorFlow.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import struct
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from PIL import Image, ImageOps, UnidentifiedImageError

from gan.imaging import ALLOWED_FORMATS, to_rgb
from training.errors import Message, N_, english_list

log = logging.getLogger(__name__)

FACE_MARGIN = 0.25          # the face box grows by this fraction of its side on every edge
FACE_DETECT_MAX_SIDE = 640  # faces are searched on a copy no larger than this (speed on big photos)

# A JPEG is decoded at the smallest of 1/2, 1/4, 1/8 of its size that keeps both sides at least this
# long: a training picture is 64 px, and faces are searched at FACE_DETECT_MAX_SIDE at most.
DRAFT_SIDE = 1024
# Why a picture was left out: words for the chat, which the bot translates.
NOT_ALLOWED = N_("not a JPEG, PNG or WEBP picture")
TOO_LARGE = N_("too large")
TOO_SMALL = N_("too small")
CORRUPT = N_("corrupt or unreadable")
UNSAFE_PATH = N_("unsafe path")
ENCRYPTED = N_("encrypted")
DUPLICATE = N_("duplicate")
BOMB = N_("decompression bomb")
NO_FACE = N_("no face found")

# The end of central directory record (22 bytes and a comment of up to 64 KiB), the ZIP64 locator
# just before it, and the ZIP64 record just before that (APPNOTE.TXT 4.3.14-4.3.16).
_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIG = b"PK\x05\x06"
_EOCD_SEARCH = (1 << 16) + _EOCD.size
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_CENTRAL_HEADER = struct.Struct("<4s6H3L5H2L")  # 46 bytes, then the name, extra field and comment
_CENTRAL_SIG = b"PK\x01\x02"

_DRIVE = re.compile(r"^[A-Za-z]:")
_JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


class PrepareError(Exception):
    """A user-facing failure: ``message`` is a one-line reason fit for a chat reply (``str(exc)`` is
    its English). Reasons an uploader can meet are templates marked with ``N_``, their figures
    passed as ``params``; an operator's (the CLI's paths) stay plain English."""

    def __init__(self, template: str, **params: Any) -> None:
        self.message = Message(template, params)
        super().__init__(str(self.message))


@dataclass
class Limits:
    """Bounds on what an upload may hold. Archive-level bounds apply to zip sources only.

    ``max_memory_bytes`` and ``timeout_s`` bound the child process that ingests an upload for the
    bot (``training.ingest``); ``prepare_dataset`` called directly does not use them.
    """

    max_upload_bytes: int = 25 * 1024 * 1024
    max_members: int = 2000
    max_total_uncompressed: int = 200 * 1024 * 1024
    max_member_bytes: int = 20 * 1024 * 1024
    # Pixels decoded for one picture, counted after a JPEG's reduced-size decoding (a 60 Mpx photo
    # decodes at 4 Mpx): 16 Mpx, 48 MB of RGB, is plenty for a 64-px training picture.
    max_image_pixels: int = 16_000_000
    min_images: int = 0
    min_side: int = 32
    max_memory_bytes: int = 1024 * 1024 * 1024
    timeout_s: float = 300.0


@dataclass
class PrepareReport:
    """What a preparation kept and why the rest was skipped (reason -> count)."""

    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    out_dir: Path | None = None

    def summary(self) -> str:
        """A short text such as ``kept 38 images; skipped: 2 duplicate and 1 corrupt or unreadable``."""
        text = f"kept {self.kept} image{'' if self.kept == 1 else 's'}"
        if self.skipped:
            text += "; skipped: " + english_list([str(m) for m in skip_list(self.skipped)])
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form of the report."""
        return {"kept": self.kept, "skipped": dict(self.skipped),
                "out_dir": None if self.out_dir is None else str(self.out_dir)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PrepareReport":
        """The report ``to_dict`` wrote (from a child process, or a job's row)."""
        out_dir = data.get("out_dir")
        return cls(kept=int(data.get("kept", 0)), skipped=Counter(data.get("skipped") or {}),
                   out_dir=None if out_dir is None else Path(out_dir))


class _Candidate(NamedTuple):
    """One file of the source: its bytes, or the reason it was skipped before reading."""

    name: str
    data: bytes | None = None
    reason: str | None = None


class _Skip(Exception):
    """Raised inside the pipeline to drop one image for ``reason``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- public entry points

def prepare_dataset(source: str | os.PathLike, out: str | os.PathLike, size: int = 64,
                    face_cascade: str | os.PathLike | None = None, min_side: int | None = None,
                    limits: Limits | None = None) -> PrepareReport:
    """Clean a folder (walked recursively) or a zip file of pictures into ``out``.

    ``out`` is created if missing and must be empty. With ``face_cascade`` (an OpenCV cascade XML,
    e.g. lbpcascade_animeface.xml) each picture is cropped around its largest face and pictures
    without one are dropped; otherwise the centre square is kept. ``min_side`` (default
    ``limits.min_side``) drops pictures whose short side, or face crop, is smaller. Raises
    ``PrepareError`` for a refused archive or when fewer than ``limits.min_images`` (at least one)
    images are kept; nothing is left in ``out`` then.
    """
    limits = limits or Limits()
    source = Path(source)
    if source.is_dir():
        return _prepare(_folder_candidates(source, limits, skip_dir=Path(out)), out, size,
                        face_cascade, min_side, limits)
    if not source.is_file():
        raise PrepareError(f"{source} does not exist")
    with _open_zip(source, source.stat().st_size, limits) as zf:
        return _prepare(_zip_candidates(zf, limits), out, size, face_cascade, min_side, limits)


def ingest_zip_bytes(data: bytes, out: str | os.PathLike, size: int = 64,
                     face_cascade: str | os.PathLike | None = None, min_side: int | None = None,
                     limits: Limits | None = None) -> PrepareReport:
    """Like ``prepare_dataset`` for a zip held in memory (an admin's upload in the chat)."""
    limits = limits or Limits()
    with _open_zip(io.BytesIO(data), len(data), limits) as zf:
        return _prepare(_zip_candidates(zf, limits), out, size, face_cascade, min_side, limits)


# --------------------------------------------------------------------------- candidates per source

def _folder_candidates(root: Path, limits: Limits, skip_dir: Path) -> Iterator[_Candidate]:
    """Every file under ``root`` in a stable order, except junk and the output folder itself."""
    skip = skip_dir.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d != "__MACOSX" and Path(dirpath, d).resolve() != skip)
        for fname in sorted(filenames):
            if _is_junk(fname):
                continue
            path = Path(dirpath, fname)
            name = str(path.relative_to(root))
            try:
                if path.stat().st_size > limits.max_member_bytes:
                    yield _Candidate(name, reason=TOO_LARGE)
                    continue
                with open(path, "rb") as fh:
                    data = fh.read(limits.max_member_bytes + 1)
            except OSError as exc:
                log.debug("cannot read %s: %s", name, exc)
                yield _Candidate(name, reason=CORRUPT)
                continue
            if len(data) > limits.max_member_bytes:
                yield _Candidate(name, reason=TOO_LARGE)
            else:
                yield _Candidate(name, data)


def _open_zip(file: str | os.PathLike | IO[bytes], nbytes: int, limits: Limits) -> zipfile.ZipFile:
    """Open an archive after the checks that need no member to be read."""
    if nbytes > limits.max_upload_bytes:
        raise PrepareError(N_("archive is larger than {limit}"), limit=_human_bytes(limits.max_upload_bytes))
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as fh:
            _check_entry_count(fh, nbytes, limits.max_members)
    else:
        _check_entry_count(file, nbytes, limits.max_members)
    try:
        zf = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise PrepareError(N_("not a zip file")) from exc
    try:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise PrepareError(N_("zip holds {count} files; the limit is {limit}"), count=len(infos), limit=limits.max_members)
        declared = sum(info.file_size for info in infos)
        if declared > limits.max_total_uncompressed:
            raise PrepareError(N_("entries declare {size} uncompressed; the limit is {limit}"),
                               size=_human_bytes(declared), limit=_human_bytes(limits.max_total_uncompressed))
        if not any(not info.is_dir() for info in infos):
            raise PrepareError(N_("the archive is empty: it holds no images"))
    except BaseException:
        zf.close()
        raise
    return zf


def _check_entry_count(fh: IO[bytes], nbytes: int, max_members: int) -> None:
    """Refuse an archive with more than ``max_members`` entries before ``zipfile`` parses its directory.

    The count comes from the end-of-central-directory record, found in the last 64 KiB + 22 bytes
    (ZIP64's record when its locator is there). ``zipfile`` reads as many headers as the directory's
    size holds, whatever the record says, so the headers are also counted, up to the limit.
    """
    tail_start = max(0, nbytes - _EOCD_SEARCH)
    fh.seek(tail_start)
    tail = fh.read(nbytes - tail_start)
    at = tail.rfind(_EOCD_SIG, 0, len(tail) - _EOCD.size + len(_EOCD_SIG)) if len(tail) >= _EOCD.size else -1
    if at < 0:
        raise PrepareError(N_("not a zip file"))
    eocd_at = tail_start + at
    _, _, _, _, entries, cd_size, _, _ = _EOCD.unpack_from(tail, at)
    directory_end = eocd_at
    if eocd_at >= _ZIP64_LOCATOR.size + _ZIP64_EOCD.size:
        # As zipfile reads it: the ZIP64 record just before its locator, just before the end record.
        fh.seek(eocd_at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size)
        zip64 = fh.read(_ZIP64_EOCD.size + _ZIP64_LOCATOR.size)
        if zip64[_ZIP64_EOCD.size:][:4] == _ZIP64_LOCATOR_SIG:
            if zip64[:4] != _ZIP64_EOCD_SIG:
                raise PrepareError(N_("not a zip file"))
            entries, cd_size = _ZIP64_EOCD.unpack_from(zip64)[7:9]
            directory_end = eocd_at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
    if entries > max_members:
        raise PrepareError(N_("zip holds {count} files; the limit is {limit}"), count=entries, limit=max_members)
    if cd_size > directory_end:
        raise PrepareError(N_("not a zip file"))
    fh.seek(directory_end - cd_size)
    directory = fh.read(cd_size)
    count = pos = 0
    while count <= max_members and directory[pos:pos + 4] == _CENTRAL_SIG:
        if pos + _CENTRAL_HEADER.size > len(directory):
            break
        name_len, extra_len, comment_len = _CENTRAL_HEADER.unpack_from(directory, pos)[10:13]
        pos += _CENTRAL_HEADER.size + name_len + extra_len + comment_len
        count += 1
    if count > max_members:
        raise PrepareError(N_("zip holds more files than the limit of {limit}"), limit=max_members)


def _zip_candidates(zf: zipfile.ZipFile, limits: Limits) -> Iterator[_Candidate]:
    """Each file member's bytes, read with a cap; member names only label the candidates."""
    total = 0
    for info in zf.infolist():
        name = info.filename
        if info.is_dir():
            continue
        if _is_unsafe(name):
            log.warning("unsafe member name in archive: %r", name)
            yield _Candidate(name, reason=UNSAFE_PATH)
            continue
        if _is_junk(name):
            continue
        if info.flag_bits & 0x1:
            yield _Candidate(name, reason=ENCRYPTED)
            continue
        if info.file_size > limits.max_member_bytes:
            yield _Candidate(name, reason=TOO_LARGE)
            continue
        try:
            with zf.open(info) as fh:
                data = fh.read(limits.max_member_bytes + 1)
        except Exception as exc:  # BadZipFile (bad CRC), zlib.error, unsupported method, ...
            log.debug("cannot read member %s: %s", name, exc)
            yield _Candidate(name, reason=CORRUPT)
            continue
        total += len(data)
        if total > limits.max_total_uncompressed:
            raise PrepareError(N_("the archive unpacks to more than {limit}"),
                               limit=_human_bytes(limits.max_total_uncompressed))
        if len(data) > limits.max_member_bytes:
            yield _Candidate(name, reason=TOO_LARGE)
        else:
            yield _Candidate(name, data)


def _is_unsafe(name: str) -> bool:
    """An absolute name, a drive letter or a ``..`` component (zip slip)."""
    path = name.replace("\\", "/")
    return path.startswith("/") or bool(_DRIVE.match(path)) or ".." in path.split("/")


def _is_junk(name: str) -> bool:
    """macOS / Windows side files that are never pictures."""
    parts = name.replace("\\", "/").split("/")
    return "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1] in _JUNK_NAMES


# --------------------------------------------------------------------------- one validation pipeline

def _prepare(candidates: Iterable[_Candidate], out: str | os.PathLike, size: int,
             face_cascade: str | os.PathLike | None, min_side: int | None,
             limits: Limits) -> PrepareReport:
    """Validate, crop, resize, de-duplicate and write every candidate; clean up on failure."""
    min_side = limits.min_side if min_side is None else min_side
    detector = _load_cascade(face_cascade) if face_cascade else None
    out = Path(out)
    created = _make_out_dir(out)
    report = PrepareReport(out_dir=out)
    seen: set[str] = set()
    written: list[Path] = []
    try:
        for cand in candidates:
            try:
                if cand.reason is not None:
                    raise _Skip(cand.reason)
                img = _to_training_image(cand.data, size, min_side, limits, detector)
                digest = hashlib.sha256(img.tobytes()).hexdigest()  # decoded pixels: re-encodes match
                if digest in seen:
                    raise _Skip(DUPLICATE)
            except _Skip as skip:
                log.debug("skipped %s: %s", cand.name, skip.reason)
                report.skipped[skip.reason] += 1
                continue
            seen.add(digest)
            path = out / f"{report.kept:06d}.png"
            written.append(path)
            img.save(path, format="PNG")
            report.kept += 1
        needed = max(limits.min_images, 1)
        if report.kept < needed:
            skipped = skip_list(report.skipped)
            if report.kept == 0 and skipped:
                raise PrepareError(N_("no usable images (skipped: {skipped})"), skipped=skipped)
            if report.kept == 0:
                raise PrepareError(N_("no usable images"))
            if skipped:
                raise PrepareError(N_("only {kept} usable images; at least {needed} are needed (skipped: {skipped})"),
                                   kept=report.kept, needed=needed, skipped=skipped)
            raise PrepareError(N_("only {kept} usable images; at least {needed} are needed"),
                               kept=report.kept, needed=needed)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    log.info("%s: %s", out, report.summary())
    return report


def _make_out_dir(out: Path) -> bool:
    """Create ``out`` (returns True) or accept it if it is an empty folder (returns False)."""
    if out.exists():
        if not out.is_dir():
            raise PrepareError(f"{out} exists and is not a folder")
        if any(out.iterdir()):
            raise PrepareError(f"{out} is not empty; choose a new or empty output folder")
        return False
    out.mkdir(parents=True)
    return True


def _to_training_image(data: bytes, size: int, min_side: int, limits: Limits,
                       detector: Any | None) -> Image.Image:
    """Decode, check, crop (face or centre square) and resize one picture, or raise ``_Skip``."""
    img = _decode(data, limits)
    if min(img.size) < min_side:
        raise _Skip(TOO_SMALL)
    box = _face_box(img, detector) if detector is not None else _centre_box(img.size)
    if box[2] - box[0] < min_side:
        raise _Skip(TOO_SMALL)
    return img.resize((size, size), Image.Resampling.LANCZOS, box=box)


def _decode(data: bytes, limits: Limits) -> Image.Image:
    """Bytes -> upright RGB image, or ``_Skip`` with the reason.

    Only the allowed formats' decoders look at the bytes; a JPEG is decoded at a reduced size where it
    is large; the pixel count of what will be decoded is checked from the header first. An explicit
    check, not Pillow's warning turned into an error: ``warnings.catch_warnings`` changes process-wide
    state and is not thread-safe. Pillow's own guard (``Image.MAX_IMAGE_PIXELS``) still applies. A
    ``MemoryError`` is not a bad picture: it goes up to the caller (``training.ingest``).
    """
    try:
        img = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))  # reads the header only
    except UnidentifiedImageError:
        raise _Skip(NOT_ALLOWED) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # the warning: under -W error
        raise _Skip(BOMB) from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on malformed data
        log.debug("cannot open image: %s", exc)
        raise _Skip(CORRUPT) from None
    if img.format == "JPEG":
        img.draft(None, (DRAFT_SIDE, DRAFT_SIDE))
    if img.width * img.height > limits.max_image_pixels:
        raise _Skip(BOMB)
    try:
        img.load()
        return to_rgb(ImageOps.exif_transpose(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _Skip(BOMB) from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        log.debug("cannot decode image: %s", exc)
        raise _Skip(CORRUPT) from None


def _centre_box(wh: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred square of an image of size ``wh``."""
    w, h = wh
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return left, top, left + side, top + side


def _load_cascade(path: str | os.PathLike) -> Any:
    """An OpenCV cascade classifier, or ``PrepareError`` if the XML cannot be loaded."""
    import cv2  # only needed for face crops

    if not Path(path).is_file():
        raise PrepareError(f"face cascade {path} does not exist")
    try:
        detector = cv2.CascadeClassifier(str(path))
    except Exception as exc:  # cv2.error, or SystemError from the bindings on a malformed XML
        raise PrepareError(f"face cascade {path} could not be loaded") from exc
    if detector.empty():
        raise PrepareError(f"face cascade {path} could not be loaded")
    return detector


def _face_box(img: Image.Image, detector: Any) -> tuple[int, int, int, int]:
    """A square around the largest face (plus margin), clamped to the image; ``_Skip`` if none."""
    import cv2
    import numpy as np

    w, h = img.size
    scale = min(1.0, FACE_DETECT_MAX_SIDE / max(w, h))
    gray = img.convert("L")
    if scale < 1.0:
        gray = gray.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
    faces = detector.detectMultiScale(cv2.equalizeHist(np.asarray(gray)), 1.1, 5, minSize=(24, 24))
    if len(faces) == 0:
        raise _Skip(NO_FACE)
    fx, fy, fw, fh = (v / scale for v in max(faces, key=lambda f: int(f[2]) * int(f[3])))
    side = min(round(max(fw, fh) * (1 + 2 * FACE_MARGIN)), w, h)
    left = min(max(round(fx + fw / 2 - side / 2), 0), w - side)
    top = min(max(round(fy + fh / 2 - side / 2), 0), h - side)
    return left, top, left + side, top + side


# --------------------------------------------------------------------------- text helpers

def skip_list(skipped: Mapping[str, int]) -> list[Message]:
    """``{"duplicate": 2, ...}`` as messages such as ``2 duplicate``, the most frequent first."""
    return [Message(N_("{count} {reason}"), {"count": count, "reason": Message(reason)})
            for reason, count in Counter(skipped).most_common()]


def _human_bytes(n: int) -> str:
    """``25 MB``, ``1.0 GB``, ``512 KB``, ``100 bytes`` (binary units)."""
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GB"
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{n} bytes"
