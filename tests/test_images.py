"""backend/images.py: every bad input gives one clear InputError, every odd-but-valid image the right pixels.

All images are generated in tmp_path at test time (nothing big is committed).
"""
from __future__ import annotations

import io
import math
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.errors import InputError
from backend.images import collect_inputs, load_image
from tests.conftest import as_unprivileged

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- helpers

def pattern(w=96, h=64, block=32):
    """An asymmetric image: every block a different colour, so any flip or rotation shows."""
    rng = np.random.default_rng(7)
    colours = rng.integers(0, 256, size=((h + block - 1) // block, (w + block - 1) // block, 3), dtype=np.uint8)
    return np.ascontiguousarray(colours.repeat(block, 0).repeat(block, 1)[:h, :w])


def stored_for_orientation(upright: np.ndarray, o: int) -> np.ndarray:
    """What a camera stores so that a viewer honouring EXIF orientation `o` shows `upright`.

    Written from the EXIF definitions (where row 0 / column 0 of the stored image lie
    visually), independently of PIL's exif_transpose.
    """
    u = upright
    return {
        1: u,
        2: u[:, ::-1],            # row 0 top, column 0 right
        3: u[::-1, ::-1],         # row 0 bottom, column 0 right
        4: u[::-1, :],            # row 0 bottom, column 0 left
        5: u.transpose(1, 0, 2),  # row 0 left, column 0 top
        6: u[:, ::-1].transpose(1, 0, 2),     # row 0 right, column 0 top (phone held upright)
        7: u[::-1, ::-1].transpose(1, 0, 2),  # row 0 right, column 0 bottom
        8: u[::-1, :].transpose(1, 0, 2),     # row 0 left, column 0 bottom
    }[o]


def exif_bytes(orientation=None, f35=None, focal_mm=None, xres=None, unit=None, pixel_x=None):
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    sub = {}
    if f35 is not None:
        sub[0xA405] = f35
    if focal_mm is not None:
        sub[0x920A] = focal_mm
    if xres is not None:
        sub[0xA20E] = xres
    if unit is not None:
        sub[0xA210] = unit
    if pixel_x is not None:
        sub[0xA002] = pixel_x
    if sub:
        exif.get_ifd(0x8769).update(sub)
    return exif.tobytes()


def big_gray_jpeg(w: int, h: int) -> bytes:
    """A valid baseline JPEG of uniform grey 128 at any size, built without a w*h buffer.

    Headers and Huffman tables come from a real 8x8 PIL JPEG; the size in SOF0 is
    patched and the scan is written directly: each 8x8 block is DC difference 0
    (code 00) + end-of-block (1010), 6 bits, so 4 blocks are the 3 bytes 28 A2 8A.
    """
    b = io.BytesIO()
    Image.new("L", (8, 8), 128).save(b, "JPEG", quality=90)
    data, out, i = b.getvalue(), bytearray(b"\xff\xd8"), 2
    while True:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        seg = bytearray(data[i:i + 2 + length])
        if marker == 0xC0:
            seg[5:9] = struct.pack(">HH", h, w)
        out += seg
        i += 2 + length
        if marker == 0xDA:
            break
    reps, rest = divmod(((w + 7) // 8) * ((h + 7) // 8), 4)
    bits = "001010" * rest
    bits += "1" * (-len(bits) % 8)
    out += b"\x28\xa2\x8a" * reps + (int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b"") + b"\xff\xd9"
    return bytes(out)


def big_bilevel_png(w: int, h: int) -> bytes:
    """A valid 1-bit PNG of any size, compressed row by row (the decoded image would be w*h bytes)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    comp, row, idat = zlib.compressobj(9), b"\x00" * (1 + (w + 7) // 8), []
    for _ in range(h):
        idat.append(comp.compress(row))
    idat.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(idat)) + chunk(b"IEND", b"")


def peak_rss_mb_of_load(path: Path) -> tuple[str, float]:
    """Load in a fresh interpreter and return (outcome, its peak resident memory in MB)."""
    code = (
        "import resource, sys\n"
        "from backend.images import load_image\n"
        "from backend.errors import InputError\n"
        "try:\n"
        "    r = load_image(sys.argv[1]); out = f'ok {r.rgb.shape} {r.rgb.min()} {r.rgb.max()} {r.scale}'\n"
        "except InputError as e:\n"
        "    out = 'InputError ' + str(e)\n"
        # VmHWM, not ru_maxrss: the latter survives fork+exec and would report pytest's own peak
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(out); print(int(hwm) / 1024)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    outcome, rss = res.stdout.strip().splitlines()
    return outcome, float(rss)


def expect_error(path, *fragments, **kw) -> InputError:
    with pytest.raises(InputError) as info:
        load_image(path, **kw)
    msg = str(info.value)
    assert Path(path).name in msg
    for f in fragments:
        assert f in msg, msg
    assert "\n" not in msg
    return info.value


# ---------------------------------------------------------------- collect_inputs

def test_collect_expands_folder_sorted_images_only(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.webp", "notes.txt", "clip.mp4", "._a.jpg", "d.heic"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.jpg").mkdir()  # a folder with an image-like name is not an image
    got = collect_inputs([str(tmp_path)])
    assert [p.name for p in got] == ["a.jpg", "b.PNG", "c.webp", "d.heic"]


def test_collect_keeps_files_and_videos_in_order_without_duplicates(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"x")
    (tmp_path / "talk.MOV").write_bytes(b"x")
    got = collect_inputs([str(tmp_path / "talk.MOV"), str(tmp_path / "x.jpg"), str(tmp_path / "x.jpg")])
    assert [p.name for p in got] == ["talk.MOV", "x.jpg"]


@pytest.mark.parametrize("case", ["missing", "empty_folder", "folder_without_images"])
def test_collect_errors_name_the_path(tmp_path, case):
    target = tmp_path / "photos"
    if case != "missing":
        target.mkdir()
    if case == "folder_without_images":
        (target / "readme.txt").write_text("hi")
        (target / "clip.mp4").write_bytes(b"x")  # videos inside folders are not picked up
    with pytest.raises(InputError) as info:
        collect_inputs([str(target)])
    expected = "no such file or folder" if case == "missing" else "folder contains no images"
    assert str(info.value).startswith(f"{target}: {expected}")
    assert info.value.path == str(target)


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize("case", ["missing", "folder", "empty", "text_as_jpg", "html_as_png", "truncated_jpeg",
                                  "corrupt_png", "one_pixel", "thin_strip"])
def test_bad_file_gives_one_line_input_error(tmp_path, case):
    p = tmp_path / "photo.jpg"
    if case == "missing":
        expect_error(p, "no such file")
        return
    if case == "folder":
        p.mkdir()
        expect_error(p, "is a folder, not an image")
        return
    if case == "empty":
        p.write_bytes(b"")
        expect_error(p, "file is empty")
        return
    if case == "text_as_jpg":
        p.write_text("this is a shopping list, not a photo\n" * 20)
        expect_error(p, "not an image", ".jpg")
        return
    if case == "html_as_png":
        p = tmp_path / "photo.png"
        p.write_text("<html><body>404 Not Found</body></html>")
        expect_error(p, "not an image", ".png")
        return
    if case == "truncated_jpeg":
        b = io.BytesIO()
        Image.fromarray(pattern(256, 256)).save(b, "JPEG", quality=95)
        p.write_bytes(b.getvalue()[: len(b.getvalue()) // 2])  # an interrupted download
        expect_error(p, "truncated", "copy it again")
        return
    if case == "corrupt_png":
        p = tmp_path / "photo.png"
        b = io.BytesIO()
        Image.fromarray(pattern(64, 64)).save(b, "PNG")
        data = bytearray(b.getvalue())
        idat = data.index(b"IDAT")
        data[idat + 20:idat + 40] = bytes(20)  # damaged compressed data, CRC now wrong
        p.write_bytes(bytes(data))
        expect_error(p, "damaged image file (PNG chunk IDAT fails its checksum)")
        return
    size = {"one_pixel": (1, 1), "thin_strip": (500, 31)}[case]
    p = tmp_path / "photo.png"
    Image.new("RGB", size, (200, 10, 10)).save(p)
    expect_error(p, f"image is too small ({size[0]}x{size[1]} px)", "at least 32 px")


def test_unreadable_file_permission_denied(tmp_path):
    p = tmp_path / "secret.jpg"
    Image.fromarray(pattern()).save(p)
    p.chmod(0)
    try:
        if os.geteuid() != 0:
            expect_error(p, "cannot read the file: permission denied")
            return
        # root reads anything: try again as the unprivileged user nobody
        def load():
            try:
                load_image(p)
                return "loaded"
            except InputError as e:
                return str(e)

        out = as_unprivileged(load)
        assert out == f"{p}: cannot read the file: permission denied"
    finally:
        p.chmod(0o644)


def test_huge_png_refused_from_header_without_decoding(tmp_path):
    p = tmp_path / "poster.png"
    p.write_bytes(big_bilevel_png(20000, 20000))
    assert p.stat().st_size < 2_000_000
    outcome, rss = peak_rss_mb_of_load(p)
    assert outcome.startswith(f"InputError {p}: image is too large to load safely"), outcome
    assert rss < 300, f"refusing a 20000x20000 image used {rss:.0f} MB"


def test_huge_jpeg_decoded_at_reduced_scale_in_bounded_memory(tmp_path):
    p = tmp_path / "scan.jpg"
    p.write_bytes(big_gray_jpeg(20000, 20000))
    outcome, rss = peak_rss_mb_of_load(p)
    # full decode would be 400 MB grey / 1.2 GB RGB; DCT-scaled decode is 25 MB
    assert outcome == "ok (4096, 4096, 3) 128 128 0.2048", outcome
    assert rss < 400, f"loading a 20000x20000 JPEG used {rss:.0f} MB"


def test_heic_refused_clearly_without_pillow_heif(tmp_path, monkeypatch):
    import backend.images as images
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # makes `import pillow_heif` fail
    monkeypatch.setattr(images, "_heif_state", None)
    p = tmp_path / "IMG_0001.HEIC"
    p.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    expect_error(p, "HEIC is not supported: convert to JPEG")


# ---------------------------------------------------------------- pixels

@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_and_focal_unchanged(tmp_path, orientation):
    upright = pattern(96, 64)
    stored = np.ascontiguousarray(stored_for_orientation(upright, orientation))
    p = tmp_path / f"phone_{orientation}.jpg"
    Image.fromarray(stored).save(p, "JPEG", quality=98, subsampling=0, exif=exif_bytes(orientation=orientation, f35=26))
    r = load_image(p)
    assert r.rgb.shape == (64, 96, 3) and r.rgb.dtype == np.uint8 and r.rgb.flags.c_contiguous
    assert r.original_size == (96, 64)
    assert np.abs(r.rgb.astype(int) - upright).max() < 24  # JPEG noise only; a wrong turn is off by ~100+
    assert r.exif_focal_px == pytest.approx(26 * math.hypot(96, 64) / math.hypot(36, 24))


def test_focal_from_focal_plane_resolution_follows_resizing(tmp_path):
    # 4.25 mm lens, 1000 px/mm on the sensor = 4250 px at the camera's 4000 px width,
    # but this file was resized to 200 px wide since: 212.5 px; loaded at max_side=100: 106.25 px.
    p = tmp_path / "resized.jpg"
    Image.fromarray(pattern(200, 150)).save(p, exif=exif_bytes(focal_mm=4.25, xres=1000.0, unit=4, pixel_x=4000))
    r = load_image(p, max_side=100)
    assert r.rgb.shape == (75, 100, 3)
    assert r.scale == pytest.approx(0.5)
    assert r.exif_focal_px == pytest.approx(106.25)
    assert any("reduced from 200x150 to 100x75" in w for w in r.warnings)


def test_no_exif_means_no_focal(tmp_path):
    p = tmp_path / "plain.png"
    Image.fromarray(pattern()).save(p)
    r = load_image(p)
    assert r.exif_focal_px is None and r.scale == 1.0 and r.warnings == []
    np.testing.assert_array_equal(r.rgb, pattern())


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("BMP", "bmp"), ("TIFF", "tif"), ("WEBP", "webp")])
def test_lossless_formats_exact(tmp_path, fmt, ext):
    p = tmp_path / f"img.{ext}"
    kw = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(pattern()).save(p, fmt, **kw)
    np.testing.assert_array_equal(load_image(p).rgb, pattern())


def test_16bit_gray_png_scaled_not_clipped(tmp_path):
    levels = np.arange(256, dtype=np.uint16)
    gray16 = np.tile(levels * 257, (40, 1))  # 0, 257, ..., 65535: exactly 8-bit k in 16 bits
    gray16[:, 0] = 128  # 128/65535 of full scale rounds to 0
    gray16[:, 1] = 32896  # 128.0 * 257
    p = tmp_path / "depth16.png"
    Image.fromarray(gray16).save(p)
    assert Image.open(p).mode == "I;16"
    r = load_image(p)
    expected = np.tile(levels.astype(np.uint8), (40, 1))
    expected[:, 0], expected[:, 1] = 0, 128
    for c in range(3):
        np.testing.assert_array_equal(r.rgb[:, :, c], expected)


def test_16bit_rgb_png(tmp_path):
    import cv2
    rgb16 = np.zeros((40, 64, 3), np.uint16)
    rgb16[..., 0] = np.arange(64) * 1024 + 1023  # top byte = 4*i + 3
    rgb16[..., 1] = 65535
    p = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(p), rgb16[..., ::-1])  # OpenCV writes BGR
    r = load_image(p)
    assert np.abs(r.rgb[..., 0].astype(int) - (np.arange(64) * 4 + 4)).max() <= 1
    assert (r.rgb[..., 1] == 255).all() and (r.rgb[..., 2] == 0).all()


def test_grayscale_becomes_rgb(tmp_path):
    g = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    p = tmp_path / "gray.jpg"
    Image.fromarray(g, "L").save(p, quality=100)
    r = load_image(p)
    assert r.rgb.shape == (48, 64, 3)
    assert (r.rgb[..., 0] == r.rgb[..., 1]).all() and (r.rgb[..., 1] == r.rgb[..., 2]).all()
    assert np.abs(r.rgb[..., 0].astype(int) - g).max() <= 2


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((40, 60, 4), np.uint8)
    a[..., :3] = (200, 40, 20)
    a[:, :20, 3] = 255  # opaque
    a[:, 20:40, 3] = 0  # fully transparent (the colour under it must not show)
    a[:, 40:, 3] = 128  # half
    p = tmp_path / "cutout.png"
    Image.fromarray(a, "RGBA").save(p)
    r = load_image(p)
    assert (r.rgb[:, :20] == (200, 40, 20)).all()
    assert (r.rgb[:, 20:40] == 255).all()
    half = np.round(np.array([200, 40, 20]) * 128 / 255 + 255 * 127 / 255)
    assert np.abs(r.rgb[:, 40:].astype(int) - half).max() <= 1
    assert "transparent areas were filled with white" in r.warnings


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (40, 40), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(1, (0, 0, 20, 40))
    p = tmp_path / "logo.png"
    im.save(p, transparency=0)
    r = load_image(p)
    assert (r.rgb[:, :20] == (0, 0, 255)).all() and (r.rgb[:, 20:] == 255).all()


CMYK_CASES = {  # ink -> expected RGB
    "cyan": ((255, 0, 0, 0), (0, 255, 255)),
    "magenta": ((0, 255, 0, 0), (255, 0, 255)),
    "yellow": ((0, 0, 255, 0), (255, 255, 0)),
    "black": ((0, 0, 0, 255), (0, 0, 0)),
    "paper": ((0, 0, 0, 0), (255, 255, 255)),
}


@pytest.mark.parametrize("adobe", [True, False], ids=["adobe_inverted", "plain"])
def test_cmyk_jpeg_pure_inks(tmp_path, adobe):
    inks = np.zeros((32, 32 * len(CMYK_CASES), 4), np.uint8)
    for i, (ink, _) in enumerate(CMYK_CASES.values()):
        inks[:, 32 * i:32 * (i + 1)] = ink
    b = io.BytesIO()
    # libjpeg writes CMYK inverted with an Adobe APP14 marker (Photoshop's convention);
    # the plain variant stores ink values as-is and carries no Adobe marker
    Image.fromarray(inks if adobe else 255 - inks, "CMYK").save(b, "JPEG", quality=95)
    data = b.getvalue()
    app14 = data.find(b"\xff\xee")
    assert data[app14 + 4:app14 + 9] == b"Adobe"
    if not adobe:
        seg_len = struct.unpack(">H", data[app14 + 2:app14 + 4])[0]
        data = data[:app14] + data[app14 + 2 + seg_len:]
    p = tmp_path / "print.jpg"
    p.write_bytes(data)
    r = load_image(p)
    for i, (name, (_, rgb)) in enumerate(CMYK_CASES.items()):
        got = r.rgb[8:24, 32 * i + 8:32 * i + 24].reshape(-1, 3).mean(0)
        assert np.abs(got - rgb).max() < 12, (name, got)


def test_heic_loads_when_pillow_heif_present(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    flat = np.zeros((64, 96, 3), np.uint8)
    flat[:, :48] = (220, 30, 30)
    flat[:, 48:] = (30, 30, 220)
    p = tmp_path / "IMG_0002.HEIC"
    Image.fromarray(flat).save(p, "HEIF", quality=95)
    r = load_image(p)
    assert r.rgb.shape == (64, 96, 3)
    assert np.abs(r.rgb[8:56, 8:40].astype(int) - (220, 30, 30)).max() < 20
    assert np.abs(r.rgb[8:56, 56:88].astype(int) - (30, 30, 220)).max() < 20
