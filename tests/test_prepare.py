"""Data-set preparation and safe ingestion of uploads (training/prepare.py).

Every fixture picture is made here with Pillow/numpy; only the face-crop test reads the shared
anime faces and cascade (skipped when they are missing). Nothing touches the network or TensorFlow.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from training.prepare import NOT_ALLOWED, Limits, PrepareError, PrepareReport, ingest_zip_bytes, prepare_dataset

REPO = Path(__file__).resolve().parents[1]
CASCADE = REPO.parent / "shared" / "data" / "lbpcascade_animeface.xml"
FACES = REPO.parent / "shared" / "data" / "anime-faces-64"


# --------------------------------------------------------------------------- fixture helpers

def picture(seed: int, size: tuple[int, int] = (64, 64), mode: str = "RGB") -> Image.Image:
    """A distinct noisy gradient picture for each seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * rng.uniform(0.2, 1.0, 3)
    noise = rng.integers(0, 80, (h, w, 3))
    arr = np.clip(base + noise, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB")
    return img.convert(mode) if mode != "RGB" else img


def encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG, built row by row: tiny on disk, huge once decoded."""
    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    block = row * 500
    idat = b"".join(comp.compress(block) for _ in range(height // 500)) + comp.compress(row * (height % 500))
    idat += comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def zeros_member_zip(path: Path, nbytes: int, declared: int | None = None,
                     extra: dict[str, bytes] | None = None) -> Path:
    """A zip with one member of ``nbytes`` zeros streamed through DEFLATE (little memory used);
    ``declared`` overwrites the uncompressed size its central directory states (lying header)."""
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        with zf.open("zeros.png", "w") as fh:
            for _ in range(nbytes // len(chunk)):
                fh.write(chunk)
        if declared is not None:
            zf.getinfo("zeros.png").file_size = declared
    return path


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def assert_training_pngs(out: Path, count: int, size: int = 64) -> None:
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:06d}.png" for i in range(count)]
    for name in names:
        with Image.open(out / name) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (size, size))


# --------------------------------------------------------------------------- folders

def test_folder_keeps_valid_pictures_and_counts_every_skip_reason(tmp_path):
    src = tmp_path / "src"
    jpeg = encode(picture(1, (64, 48)), "JPEG")
    png = encode(picture(2, (80, 64)), "PNG")
    write(src / "a.jpg", jpeg)
    write(src / "sub" / "b.png", png)
    write(src / "sub" / "deeper" / "c.webp", encode(picture(3, (72, 72)), "WEBP"))
    rgba = picture(4, (56, 56), "RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    write(src / "sub" / "d.png", encode(rgba, "PNG"))
    write(src / "misnamed.txt", encode(picture(5, (60, 60)), "JPEG"))  # a JPEG whatever its name
    # skipped ones
    write(src / "sub" / "deeper" / "copy_of_b.png", png)                                 # duplicate
    write(src / "reencoded_a.png", encode(Image.open(io.BytesIO(jpeg)).convert("RGB"), "PNG"))  # duplicate
    write(src / "broken.jpg", encode(picture(6), "JPEG")[:400])                          # truncated
    write(src / "x.png", b"this is not a picture, whatever the name says\n" * 20)        # text
    write(src / "tiny.png", encode(picture(7, (8, 8)), "PNG"))                           # too small
    write(src / "anim.gif", encode(picture(8), "GIF"))                                   # GIF
    write(src / ".DS_Store", b"\x00\x00\x00\x01Bud1")                                    # junk, silent

    report = prepare_dataset(src, tmp_path / "out")

    assert report.kept == 5
    assert report.skipped == Counter({"duplicate": 2, "corrupt or unreadable": 1, NOT_ALLOWED: 2,
                                      "too small": 1})
    assert report.out_dir == tmp_path / "out"
    assert_training_pngs(tmp_path / "out", 5)
    # the input is untouched and nothing else was written
    assert files_under(tmp_path) - {f"out/{i:06d}.png" for i in range(5)} == {
        "src/" + n for n in ("a.jpg", "sub/b.png", "sub/deeper/c.webp", "sub/d.png", "misnamed.txt",
                             "sub/deeper/copy_of_b.png", "reencoded_a.png", "broken.jpg", "x.png",
                             "tiny.png", "anim.gif", ".DS_Store")}


def test_min_side_and_size_are_honoured(tmp_path):
    src = tmp_path / "src"
    write(src / "small.png", encode(picture(1, (40, 60)), "PNG"))
    write(src / "big.png", encode(picture(2, (80, 90)), "PNG"))
    report = prepare_dataset(src, tmp_path / "out", size=32, min_side=50)
    assert (report.kept, report.skipped) == (1, Counter({"too small": 1}))
    assert_training_pngs(tmp_path / "out", 1, size=32)


def test_output_folder_may_exist_empty_but_not_hold_files(tmp_path):
    src = tmp_path / "src"
    write(src / "a.png", encode(picture(1), "PNG"))
    (tmp_path / "empty").mkdir()
    assert prepare_dataset(src, tmp_path / "empty").kept == 1

    full = tmp_path / "full"
    write(full / "keep.txt", b"mine")
    with pytest.raises(PrepareError, match="not empty"):
        prepare_dataset(src, full)
    assert files_under(full) == {"keep.txt"}
    assert (full / "keep.txt").read_bytes() == b"mine"


def test_output_inside_the_source_folder_is_not_read_back(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        write(src / f"{i}.png", encode(picture(i), "PNG"))
    report = prepare_dataset(src, src / "clean")
    assert (report.kept, report.skipped) == (3, Counter())


def test_too_few_images_raises_and_leaves_out_empty(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        write(src / f"{i}.png", encode(picture(i), "PNG"))
    write(src / "bad.png", b"nope")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(PrepareError, match=r"only 3 usable images; at least 20 are needed") as err:
        prepare_dataset(src, out, limits=Limits(min_images=20))
    assert f"1 {NOT_ALLOWED}" in str(err.value)
    assert list(out.iterdir()) == []

    # an output folder it created itself is removed again
    with pytest.raises(PrepareError, match="only 3 usable images"):
        prepare_dataset(src, tmp_path / "new", limits=Limits(min_images=20))
    assert not (tmp_path / "new").exists()


def test_no_usable_image_at_all_is_an_error(tmp_path):
    src = tmp_path / "src"
    write(src / "notes.png", b"hello")
    with pytest.raises(PrepareError, match=r"no usable images \(skipped: 1 not a JPEG, PNG or WEBP picture\)"):
        prepare_dataset(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_source_is_an_error(tmp_path):
    with pytest.raises(PrepareError, match="does not exist"):
        prepare_dataset(tmp_path / "nowhere", tmp_path / "out")


def test_decompression_bombs_are_refused_without_decoding(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write(src / "huge.png", bilevel_png(20000, 20000))   # 400 Mpx, beyond Pillow's own guard
    write(src / "large.png", bilevel_png(5000, 5000))    # 25 Mpx, beyond our 10 Mpx limit only
    write(src / "fine.png", encode(picture(1), "PNG"))
    assert (src / "huge.png").stat().st_size < 200_000

    decoded = []
    real_load = ImageFile.ImageFile.load

    def spy_load(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    report = prepare_dataset(src, tmp_path / "out", limits=Limits(max_image_pixels=10_000_000))
    assert (report.kept, report.skipped) == (1, Counter({"decompression bomb": 2}))
    assert set(decoded) == {(64, 64)}  # only the fine picture was ever decoded


# --------------------------------------------------------------------------- zips

def test_zip_of_25_images_is_ingested(tmp_path):
    members = {f"pics/{i:02d}.{'jpg' if i % 2 else 'png'}": encode(picture(i), "JPEG" if i % 2 else "PNG")
               for i in range(25)}
    members["__MACOSX/pics/._00.png"] = b"\x00\x05\x16\x07 resource fork"
    path = make_zip(tmp_path / "upload.zip", members)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(zipfile.ZipInfo("pics/empty_dir/"), b"")

    report = prepare_dataset(path, tmp_path / "out", limits=Limits(min_images=20))
    assert (report.kept, report.skipped) == (25, Counter())
    assert_training_pngs(tmp_path / "out", 25)

    # the bot's path: the same bytes from memory
    report = ingest_zip_bytes(path.read_bytes(), tmp_path / "out2", limits=Limits(min_images=20))
    assert report.to_dict() == {"kept": 25, "skipped": {}, "out_dir": str(tmp_path / "out2")}
    assert_training_pngs(tmp_path / "out2", 25)


def test_zip_slip_entries_are_counted_and_nothing_escapes_out(tmp_path, monkeypatch):
    evil = encode(picture(99), "PNG")
    members = {"../../evil.png": evil, "/tmp/abs_evil.png": evil, "C:\\evil.png": evil,
               "ok/../../evil2.png": evil}
    members.update({f"{i}.png": encode(picture(i), "PNG") for i in range(3)})
    upload = make_zip(tmp_path / "upload.zip", members)
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # a relative "../../evil.png" would land in tmp_path

    report = prepare_dataset(upload, tmp_path / "a" / "b" / "out")
    assert (report.kept, report.skipped) == (3, Counter({"unsafe path": 4}))
    assert files_under(tmp_path) == {"upload.zip"} | {f"a/b/out/{i:06d}.png" for i in range(3)}
    assert not Path("/tmp/abs_evil.png").exists()


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> Path:
    """300 MB of zeros in one DEFLATE member: about 300 KB on disk."""
    return zeros_member_zip(tmp_path_factory.mktemp("bomb") / "bomb.zip", 300 << 20)


def test_zip_bomb_is_refused_before_reading(zip_bomb, tmp_path):
    assert zip_bomb.stat().st_size < 1 << 20
    with pytest.raises(PrepareError, match=r"entries declare 300 MB uncompressed; the limit is 200 MB"):
        prepare_dataset(zip_bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(PrepareError, match=r"declare 300 MB"):
        ingest_zip_bytes(zip_bomb.read_bytes(), tmp_path / "out")


def test_zip_declaring_1_gb_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", encode(picture(1), "PNG"))
        zf.writestr("b.png", encode(picture(2), "PNG"))
        zf.getinfo("a.png").file_size = 1 << 30  # the central directory now claims 1 GB
    assert path.stat().st_size < 100_000

    def no_reading(*args, **kwargs):
        raise AssertionError("a member was opened")

    monkeypatch.setattr(zipfile.ZipFile, "open", no_reading)
    with pytest.raises(PrepareError, match=r"entries declare 1\.0 GB uncompressed; the limit is 200 MB"):
        prepare_dataset(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_member_lying_small_about_its_size_is_read_with_a_cap(tmp_path):
    # 64 MB of zeros whose header claims 1000 bytes: at most the declared size is read, and the
    # checksum mismatch marks the member as corrupt; the honest picture beside it is kept.
    path = zeros_member_zip(tmp_path / "liar.zip", 64 << 20, declared=1000,
                            extra={"fine.png": encode(picture(1), "PNG")})
    report = prepare_dataset(path, tmp_path / "out")
    assert (report.kept, report.skipped) == (1, Counter({"corrupt or unreadable": 1}))


def test_member_declared_larger_than_the_member_limit_is_skipped(tmp_path):
    big = encode(picture(1, (80, 80)), "PNG")
    path = make_zip(tmp_path / "up.zip", {"big.png": big, "small.png": encode(picture(2, (40, 40)), "JPEG")})
    report = prepare_dataset(path, tmp_path / "out", limits=Limits(max_member_bytes=len(big) - 1))
    assert (report.kept, report.skipped) == (1, Counter({"too large": 1}))


def test_empty_zip_is_refused(tmp_path):
    path = tmp_path / "empty.zip"
    zipfile.ZipFile(path, "w").close()
    with pytest.raises(PrepareError, match="holds no images"):
        prepare_dataset(path, tmp_path / "out")
    only_dirs = tmp_path / "dirs.zip"
    with zipfile.ZipFile(only_dirs, "w") as zf:
        zf.writestr(zipfile.ZipInfo("folder/"), b"")
    with pytest.raises(PrepareError, match="holds no images"):
        ingest_zip_bytes(only_dirs.read_bytes(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_non_zip_is_refused(tmp_path):
    text = write(tmp_path / "upload.zip", b"just some text, not an archive\n")
    with pytest.raises(PrepareError, match="^not a zip file$"):
        prepare_dataset(text, tmp_path / "out")
    png = write(tmp_path / "picture.zip", encode(picture(1), "PNG"))
    with pytest.raises(PrepareError, match="^not a zip file$"):
        prepare_dataset(png, tmp_path / "out")
    with pytest.raises(PrepareError, match="^not a zip file$"):
        ingest_zip_bytes(b"PK\x03\x04 truncated", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_archive_over_the_upload_limit_is_refused(tmp_path):
    path = make_zip(tmp_path / "up.zip", {f"{i}.png": encode(picture(i), "PNG") for i in range(3)})
    assert path.stat().st_size > 2048
    limits = Limits(max_upload_bytes=2048)
    with pytest.raises(PrepareError, match=r"^archive is larger than 2\.0 KB$"):
        prepare_dataset(path, tmp_path / "out", limits=limits)
    with pytest.raises(PrepareError, match=r"^archive is larger than 2\.0 KB$"):
        ingest_zip_bytes(path.read_bytes(), tmp_path / "out", limits=limits)
    assert not (tmp_path / "out").exists()


def test_archive_with_too_many_members_is_refused(tmp_path):
    path = make_zip(tmp_path / "up.zip", {f"{i}.txt": b"x" for i in range(6)})
    with pytest.raises(PrepareError, match=r"^zip holds 6 files; the limit is 5$"):
        prepare_dataset(path, tmp_path / "out", limits=Limits(max_members=5))


def no_directory_parsing(monkeypatch) -> None:
    """Make ``zipfile`` fail the test if it parses an archive's central directory."""
    def parse(self):
        raise AssertionError("zipfile parsed the central directory")

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", parse)


def set_eocd_count(path: Path, count: int) -> None:
    """Overwrite the entry counts of an archive's end-of-central-directory record."""
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, at + 8, count, count)
    path.write_bytes(bytes(data))


def test_entry_count_is_read_from_the_end_record_before_the_directory_is_parsed(tmp_path, monkeypatch):
    path = make_zip(tmp_path / "many.zip", {f"{i}.txt": b"" for i in range(2001)})
    no_directory_parsing(monkeypatch)
    with pytest.raises(PrepareError, match=r"^zip holds 2001 files; the limit is 2000$"):
        prepare_dataset(path, tmp_path / "out")
    with pytest.raises(PrepareError, match=r"^zip holds 2001 files; the limit is 2000$"):
        ingest_zip_bytes(path.read_bytes(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip64_end_records_give_the_entry_count(tmp_path, monkeypatch):
    # As written for more than 65535 entries: ZIP64 end records, and 0xFFFF in the classic one.
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 3)
    path = make_zip(tmp_path / "z64.zip", {f"{i}.png": encode(picture(i), "PNG") for i in range(6)})
    monkeypatch.undo()
    set_eocd_count(path, 0xFFFF)
    assert zipfile.ZipFile(path).infolist()[5].filename == "5.png"  # a valid archive to zipfile too
    assert prepare_dataset(path, tmp_path / "ok", limits=Limits(max_members=6)).kept == 6
    no_directory_parsing(monkeypatch)
    with pytest.raises(PrepareError, match=r"^zip holds 6 files; the limit is 5$"):
        prepare_dataset(path, tmp_path / "out", limits=Limits(max_members=5))


def test_an_end_record_lying_about_the_entry_count_is_caught_by_counting_headers(tmp_path, monkeypatch):
    path = make_zip(tmp_path / "liar.zip", {f"{i}.txt": b"" for i in range(30)})
    set_eocd_count(path, 1)  # zipfile would still read all 30 headers the directory holds
    no_directory_parsing(monkeypatch)
    with pytest.raises(PrepareError, match=r"^zip holds more files than the limit of 10$"):
        prepare_dataset(path, tmp_path / "out", limits=Limits(max_members=10))


def test_only_the_allowed_formats_decoders_read_an_upload(tmp_path, monkeypatch):
    from PIL import BmpImagePlugin, GifImagePlugin, TiffImagePlugin

    src = tmp_path / "src"
    write(src / "anim.gif", encode(picture(1), "GIF"))
    write(src / "scan.tif", encode(picture(2), "TIFF"))
    write(src / "old.bmp", encode(picture(3), "BMP"))
    write(src / "fine.webp", encode(picture(4), "WEBP"))
    opened = []
    for plugin in (GifImagePlugin.GifImageFile, TiffImagePlugin.TiffImageFile, BmpImagePlugin.BmpImageFile):
        monkeypatch.setattr(plugin, "_open", lambda self, fmt=plugin.format: opened.append(fmt))
    report = prepare_dataset(src, tmp_path / "out")
    assert (report.kept, report.skipped) == (1, Counter({NOT_ALLOWED: 3}))
    assert opened == []  # their parsers never saw the bytes


def test_large_jpegs_are_decoded_at_a_reduced_size(tmp_path, monkeypatch):
    """8 Mpx over a 4 Mpx limit: decoded at half size by the JPEG decoder, not refused, not decoded whole."""
    x = np.linspace(0, 255, 4096, dtype=np.float32)
    y = np.linspace(0, 255, 2048, dtype=np.float32)
    arr = np.stack([np.broadcast_to(x, (2048, 4096)), np.broadcast_to(y[:, None], (2048, 4096)),
                    np.full((2048, 4096), 90.0)], axis=-1).astype(np.uint8)
    big = encode(Image.fromarray(arr), "JPEG")
    write(tmp_path / "src" / "big.jpg", big)
    decoded = []
    real_load = ImageFile.ImageFile.load

    def spy_load(self):
        decoded.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    report = prepare_dataset(tmp_path / "src", tmp_path / "out", limits=Limits(max_image_pixels=4_000_000))
    monkeypatch.undo()
    assert (report.kept, report.skipped) == (1, Counter())
    assert set(decoded) == {(2048, 1024)}
    # the same picture as a full decode would give
    with Image.open(io.BytesIO(big)) as full:
        reference = np.asarray(full.convert("RGB").resize((64, 64), Image.Resampling.LANCZOS,
                                                          box=(1024, 0, 3072, 2048)), np.float32)
    kept = np.asarray(Image.open(tmp_path / "out" / "000000.png"), np.float32)
    assert np.abs(kept - reference).mean() < 2.0


# --------------------------------------------------------------------------- face crop

@pytest.mark.skipif(not CASCADE.is_file() or not FACES.is_dir(), reason="shared cascade or faces missing")
def test_face_crop_keeps_faces_and_drops_faceless_pictures(tmp_path):
    src = tmp_path / "src"
    faces = sorted(FACES.glob("*.jpg"))[:10]
    assert len(faces) == 10
    for i, face in enumerate(faces):
        canvas = Image.new("RGB", (320, 320), (128, 128, 128))
        with Image.open(face) as img:
            canvas.paste(img.convert("RGB").resize((192, 192), Image.Resampling.LANCZOS),
                         (32 + 64 * (i % 2), 32 + 64 * (i // 2 % 2)))
        write(src / f"face{i}.png", encode(canvas, "PNG"))

    report = prepare_dataset(src, tmp_path / "out", face_cascade=CASCADE)
    assert report.kept >= 7
    assert report.kept + report.skipped["no face found"] == 10
    assert_training_pngs(tmp_path / "out", report.kept)
    # the crop is around the face: the gray canvas (64% of each input) is mostly cut away,
    # and the middle of each output is all face
    for path in (tmp_path / "out").iterdir():
        canvas_px = np.all(np.abs(np.asarray(Image.open(path)).astype(int) - 128) <= 2, axis=-1)
        assert canvas_px.mean() < 0.55, f"{path.name} is {canvas_px.mean():.0%} canvas"
        assert canvas_px[16:48, 16:48].mean() < 0.05, path.name

    flat = tmp_path / "flat"
    write(flat / "gray.png", encode(Image.new("RGB", (320, 320), (128, 128, 128)), "PNG"))
    with pytest.raises(PrepareError, match=r"no usable images \(skipped: 1 no face found\)"):
        prepare_dataset(flat, tmp_path / "out2", face_cascade=CASCADE)


def test_unloadable_face_cascade_is_an_error(tmp_path):
    src = tmp_path / "src"
    write(src / "a.png", encode(picture(1), "PNG"))
    bad = write(tmp_path / "cascade.xml", b"<opencv_storage></opencv_storage>")
    with pytest.raises(PrepareError, match="face cascade"):
        prepare_dataset(src, tmp_path / "out", face_cascade=bad)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- report and imports

def test_report_summary_reads_well_in_a_chat():
    report = PrepareReport(kept=38, skipped=Counter({"corrupt or unreadable": 1, "duplicate": 2}),
                           out_dir=Path("data/x"))
    assert report.summary() == "kept 38 images; skipped: 2 duplicate and 1 corrupt or unreadable"
    assert PrepareReport(kept=1).summary() == "kept 1 image"
    assert json.loads(json.dumps(report.to_dict())) == {
        "kept": 38, "skipped": {"corrupt or unreadable": 1, "duplicate": 2}, "out_dir": "data/x"}


def test_module_imports_without_tensorflow():
    code = "import sys, training.prepare; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_decompression_guard_leaves_the_warnings_filters_alone(tmp_path, monkeypatch):
    """The pixel count is checked explicitly: ``warnings.catch_warnings`` changes process-wide state and
    is not thread-safe, and uploads are decoded in worker threads, so nothing on the way may use it."""
    import warnings

    callers = []
    real = warnings.catch_warnings

    def spy(*args, **kwargs):
        callers.append(sys._getframe(1).f_globals.get("__name__"))
        return real(*args, **kwargs)

    src = tmp_path / "src"
    write(src / "huge.png", bilevel_png(20000, 20000))   # Pillow's own guard (MAX_IMAGE_PIXELS) refuses it
    write(src / "large.png", bilevel_png(5000, 5000))    # 25 Mpx: refused by the explicit header check
    write(src / "edge.png", bilevel_png(1000, 1000))     # exactly the limit: accepted
    write(src / "fine.png", encode(picture(1), "PNG"))
    monkeypatch.setattr(warnings, "catch_warnings", spy)
    report = prepare_dataset(src, tmp_path / "out", limits=Limits(max_image_pixels=1_000_000))
    monkeypatch.undo()
    assert (report.kept, report.skipped) == (2, Counter({"decompression bomb": 2}))
    assert not callers, f"warnings.catch_warnings used by {callers}"
