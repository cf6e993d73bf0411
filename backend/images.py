"""Turn the user's paths into checked RGB images.

Every way an input can be wrong ends in one `InputError(message, path)`: the
user sees "<file>: <problem>" and nothing else. The loader is written for
untrusted files (whatever a user drags in): it reads the header first, refuses
or shrinks huge images *before* decoding them, and maps every decoder failure
onto InputError.
"""
from __future__ import annotations

import errno
import math
import os
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from .contract import HEIF_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS  # noqa: F401 - one set, shared with the add-on
from .errors import InputError

MIN_SIDE = 32  # below this no detector finds a face, and the texture would be mush

# A cut-off download must not turn into a photo with a grey band baked into the
# texture, so truncated files are refused (the user can copy the file again).
# This relies on PIL's process-wide ImageFile.LOAD_TRUNCATED_IMAGES staying
# False (its default); nothing in FaceForge may turn it on.

_EXIF_IFD = 0x8769
_ORIENTATION = 0x0112
_FOCAL_LENGTH = 0x920A
_FOCAL_35MM = 0xA405
_FOCAL_PLANE_XRES = 0xA20E
_FOCAL_PLANE_UNIT = 0xA210
_PIXEL_X_DIMENSION = 0xA002
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # FocalPlaneResolutionUnit -> mm
_FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)

_heif_lock = threading.Lock()
_heif_state: bool | None = None  # None = not tried yet


@dataclass
class LoadedImage:
    rgb: np.ndarray  # uint8 (H, W, 3), C-contiguous, upright (EXIF orientation applied)
    path: Path
    original_size: tuple  # (w, h) of the full-resolution upright image
    scale: float  # loaded size / original size (1.0 unless the image was shrunk to max_side)
    exif_focal_px: float | None  # focal length in pixels of `rgb`, when the EXIF data gives one
    warnings: list = field(default_factory=list)
    format: str | None = None  # PIL's name of the file's format ("JPEG", "PNG", "HEIF", ...)
    # the file's pixels, as stored, are what `rgb` shows (upright, 8-bit, opaque): a copy of the file
    # shows the same in Blender, which applies no EXIF orientation and loads no HEIC
    as_stored: bool = False


# How a photo is kept in a result bundle: the file itself when Blender shows it as the fit saw it,
# else the pixels the fit used, as JPEG (quality 95) when the file was lossy anyway, PNG when it was not.
_BUNDLE_COPY = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png"}
_LOSSY = {"JPEG", "MPO", "HEIF", "AVIF", "WEBP"}


def bundle_image_plan(li: LoadedImage) -> tuple[str, bool]:
    """(suffix, copy) for the bundle's copy of `li`: copy=True keeps the file byte for byte."""
    if li.as_stored and li.format in _BUNDLE_COPY:
        return _BUNDLE_COPY[li.format], True
    return (".jpg" if li.format in _LOSSY else ".png"), False


def encode_image(rgb: np.ndarray, suffix: str) -> bytes:
    """uint8 RGB -> the bytes of a .jpg or .png file (no EXIF: the pixels are upright as they are)."""
    import io

    if suffix == ".png":
        import cv2

        ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
        if not ok:
            raise OSError("PNG encoding failed")
        return buf.tobytes()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def missing_reason(path, what: str = "file") -> str:
    """Why `path` cannot be opened though the user named it: a symbolic link loop or a dangling link says
    so (Path.exists() reports both as plain absence), anything else is "no such <what>"."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop (a link that points back at itself)"
        try:
            if os.path.islink(path):
                return f"broken symbolic link (it points to {os.readlink(path)}, which does not exist)"
        except OSError:
            pass
    return f"no such {what}"


def collect_inputs(paths: list[str]) -> list[Path]:
    """Expand folders into their images (sorted by name); keep files and videos as given.

    Files are passed through whatever their extension: load_image decides from
    the content. Hidden files in folders (macOS `._x.jpg` resource forks) are
    skipped because they carry an image extension but no image.
    """
    if not paths:
        raise InputError("no input images given")
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw).expanduser()
        try:
            exists, is_dir = p.exists(), p.is_dir()
        except PermissionError:
            raise InputError("cannot access: permission denied", p) from None
        if not exists:
            raise InputError(missing_reason(p, "file or folder"), p)
        if is_dir:
            try:
                entries = sorted(p.iterdir(), key=lambda q: q.name.lower())
            except PermissionError:
                raise InputError("cannot open the folder: permission denied", p) from None
            found = [q for q in entries
                     if q.suffix.lower() in IMAGE_EXTENSIONS and not q.name.startswith(".") and q.is_file()]
            if not found:
                raise InputError("folder contains no images (looked for "
                                 + ", ".join(sorted(e[1:] for e in IMAGE_EXTENSIONS)) + ")", p)
        else:
            found = [p]
        for q in found:
            key = q.resolve()
            if key not in seen:  # the same photo twice would count as two views
                seen.add(key)
                out.append(q)
    return out


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _looks_like_heif(head: bytes) -> bool:
    return head[4:8] == b"ftyp" and head[8:12] in {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis",
                                                   b"mif1", b"msf1", b"avif"}


def _enable_heif() -> bool:
    global _heif_state
    with _heif_lock:
        if _heif_state is None:
            try:
                import pillow_heif
                pillow_heif.register_heif_opener()
                _heif_state = True
            except ImportError:
                _heif_state = False
        return _heif_state


def _open(path: Path, fp):
    """Parse only the header. PIL's own bomb limit is replaced by our size rules, which know that
    a huge JPEG can be decoded at 1/8 scale; we do that by building the plugin directly rather
    than by lowering Image.MAX_IMAGE_PIXELS, a process-wide setting other threads rely on."""
    try:
        return Image.open(fp)
    except Image.DecompressionBombError:
        fp.seek(0)
        if fp.read(3) == b"\xff\xd8\xff":
            fp.seek(0)
            return JpegImagePlugin.JpegImageFile(fp)
        raise


def _exif_focal_px(im: Image.Image, file_w: int, file_h: int, messages: list) -> float | None:
    """Focal length in pixels of the stored (un-rotated, full-size) image, or None.

    FocalLengthIn35mmFilm is read as the full-frame equivalent over the image
    diagonal (CIPA DC-008), which keeps it right for 4:3 phone photos and makes
    it independent of the EXIF rotation.
    """
    try:
        exif = im.getexif()
        sub = exif.get_ifd(_EXIF_IFD)
        f35 = sub.get(_FOCAL_35MM)
        if f35 and float(f35) > 0:
            return float(f35) * math.hypot(file_w, file_h) / _FULL_FRAME_DIAGONAL_MM
        f_mm, xres, unit = sub.get(_FOCAL_LENGTH), sub.get(_FOCAL_PLANE_XRES), sub.get(_FOCAL_PLANE_UNIT, 2)
        if f_mm and xres and float(f_mm) > 0 and float(xres) > 0 and int(unit) in _UNIT_MM:
            f_px = float(f_mm) * float(xres) / _UNIT_MM[int(unit)]
            recorded_w = sub.get(_PIXEL_X_DIMENSION)
            if recorded_w and int(recorded_w) > 0 and int(recorded_w) != file_w:
                # FocalPlaneXResolution describes the camera's output; the file was resized since.
                f_px *= file_w / int(recorded_w)
            return f_px
    except Exception as e:  # EXIF is optional metadata written by countless tools; a broken block only costs the focal hint
        messages.append(f"EXIF data unreadable, focal length unknown ({type(e).__name__})")
    return None


def _to_rgb(im: Image.Image, messages: list) -> np.ndarray:
    """Any PIL mode -> uint8 RGB, scaling (not clipping) high bit depths and flattening alpha on white."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        # 16-bit files are stored as I;16 or (older writers / TIFF) as I; PIL's own convert clips at 255.
        peak = 255.0 if (mode in ("I", "F") and np.nanmax(a, initial=0) <= 255) else 65535.0
        if mode == "F" and np.nanmax(a, initial=0) <= 1.0:
            peak = 1.0
        a = np.clip(np.nan_to_num(a) / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))
    if mode == "CMYK":
        icc = im.info.get("icc_profile")
        if icc:
            try:
                from PIL import ImageCms
                import io
                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                im = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
                return np.ascontiguousarray(np.asarray(im, np.uint8))
            except Exception as e:  # a damaged embedded profile: the naive conversion below is still close
                messages.append(f"CMYK colour profile unusable ({type(e).__name__}); colours are approximate")
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), np.uint8))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info) \
        or (mode in ("L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"), np.float32)
        alpha = rgba[:, :, 3:] / 255.0
        if alpha.min() < 1.0:
            messages.append("transparent areas were filled with white")
        rgb = rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
        return np.ascontiguousarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))
    if mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, np.uint8))


def _fix_cmyk_polarity(im: Image.Image) -> Image.Image:
    """PIL reads every CMYK JPEG as Adobe-inverted. Only files with an Adobe APP14 marker are;
    without it the ink values are stored plainly, so we undo PIL's inversion."""
    if im.mode == "CMYK" and isinstance(im, JpegImagePlugin.JpegImageFile) and "adobe" not in im.info:
        from PIL import ImageChops
        return ImageChops.invert(im)
    return im


def load_image(path, max_side: int = 4096, max_pixels: float = 300e6) -> LoadedImage:
    """Load one photo as upright uint8 RGB, at most `max_side` px on its long side.

    `max_pixels` bounds what is ever decoded: a JPEG is decoded at a reduced DCT
    scale (1/2..1/8, Image.draft) so a 20000x20000 photo costs ~25 MP, not 400;
    other formats must be decoded whole, so above `max_pixels` they are refused
    from their header, before any pixel buffer is allocated.
    """
    path = Path(path)
    messages: list[str] = []
    try:
        if path.is_dir():  # raises (not False) when a parent folder is not accessible
            raise InputError("is a folder, not an image", path)
        fp = open(path, "rb")
    except FileNotFoundError:
        raise InputError(missing_reason(path), path) from None
    except PermissionError:
        raise InputError("cannot read the file: permission denied", path) from None
    except OSError as e:
        why = missing_reason(path) if e.errno == errno.ELOOP else f"cannot read the file ({e.strerror or e})"
        raise InputError(why, path) from None
    # PIL warns on stderr about damaged metadata; the user gets it in the result's warnings instead
    with fp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = _load_open_file(fp, path, max_side, max_pixels, messages)
    for text in dict.fromkeys(str(w.message).strip() for w in caught):
        loaded.warnings.append(f"damaged metadata ignored: {text}")
    return loaded


def _load_open_file(fp, path: Path, max_side: int, max_pixels: float, messages: list) -> LoadedImage:
    try:
        head = fp.read(16)
    except OSError as e:
        raise InputError(f"cannot read the file ({e.strerror or e})", path) from None
    if not head:
        raise InputError("file is empty (0 bytes)", path)
    fp.seek(0)
    if path.suffix.lower() in HEIF_EXTENSIONS or _looks_like_heif(head):
        if not _enable_heif():
            raise InputError("HEIC is not supported: convert to JPEG", path)
    try:
        im = _open(path, fp)
    except UnidentifiedImageError:
        raise InputError(f"not an image, or an image format we cannot read (the {path.suffix or 'file'} "
                         "content is not JPEG, PNG, BMP, TIFF, WebP or HEIC)", path) from None
    except Image.DecompressionBombError:
        raise InputError(f"image is too large to load safely (over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} "
                         "megapixels); reduce it to at most 8000 px per side", path) from None
    except Exception as e:  # header parsers of a dozen formats fail in their own ways on damaged files
        raise InputError(f"damaged or unreadable image file ({_reason(e)})", path) from None

    try:
        if im.format == "PNG":
            _check_png_checksums(fp, path)
        return _decode(im, path, max_side, max_pixels, messages)
    except InputError:
        raise
    except MemoryError:
        raise InputError("not enough memory to decode this image; reduce its size", path) from None
    except Exception as e:  # decoders raise OSError, ValueError, SyntaxError, struct.error... on bad data
        raise InputError(f"damaged or unreadable image file ({_reason(e)})", path) from None
    finally:
        im.close()


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "truncated" in text:
        return "the file is truncated, probably an incomplete download or copy; copy it again"
    return text


def _check_png_checksums(fp, path: Path) -> None:
    """PIL checks no CRC of PNG image data, so a damaged PNG decodes to silent garbage; check them here."""
    fp.seek(8)
    while True:
        head = fp.read(8)
        if len(head) < 8:
            return  # PIL reports a missing end itself, as truncation
        length, kind = struct.unpack(">I4s", head)
        crc = zlib.crc32(kind)
        left = length
        while left:
            piece = fp.read(min(left, 1 << 20))
            if not piece:
                return
            crc = zlib.crc32(piece, crc)
            left -= len(piece)
        stored = fp.read(4)
        if len(stored) < 4:
            return
        if struct.unpack(">I", stored)[0] != crc:
            name = kind.decode("latin-1") if kind.isalpha() else repr(kind)
            raise InputError(f"damaged image file (PNG chunk {name} fails its checksum); copy or export it again",
                             path)
        if kind == b"IEND":
            return


def _decode(im: Image.Image, path: Path, max_side: int, max_pixels: float, messages: list) -> LoadedImage:
    file_w, file_h = im.size
    if min(file_w, file_h) < MIN_SIDE:
        raise InputError(f"image is too small ({file_w}x{file_h} px); need at least {MIN_SIDE} px per side", path)

    orientation = 1
    try:
        orientation = int(im.getexif().get(_ORIENTATION, 1) or 1)
    except Exception:  # unreadable EXIF: treat as upright, _exif_focal_px reports it
        pass
    swapped = orientation in (5, 6, 7, 8)
    original = (file_h, file_w) if swapped else (file_w, file_h)

    # Reduced-scale JPEG decoding: ask for the smallest DCT scale that still
    # leaves the long side at least max_side (draft never goes below the request).
    long_side = max(file_w, file_h)
    if isinstance(im, JpegImagePlugin.JpegImageFile) and long_side > max_side:  # MPO phone photos too
        k = max_side / long_side
        im.draft(im.mode, (max(1, math.ceil(file_w * k)), max(1, math.ceil(file_h * k))))
    dec_w, dec_h = im.size
    if dec_w * dec_h > max_pixels:
        raise InputError(f"image is too large to load safely ({file_w}x{file_h} = {file_w * file_h / 1e6:.0f} "
                         f"megapixels, limit {max_pixels / 1e6:.0f}); reduce it to at most {max_side} px per side",
                         path)

    focal_file = _exif_focal_px(im, file_w, file_h, messages)
    fmt = im.format
    n_frames = getattr(im, "n_frames", 1) or 1
    if n_frames > 1 and fmt != "MPO":  # MPO: a phone photo's second image (depth map, preview), not a sequence
        messages.append(f"{'animated' if fmt in ('GIF', 'PNG', 'WEBP') else 'multi-page'} {fmt} with {n_frames} "
                        "frames; only the first frame is used")
    im.load()  # raises on truncated data, since LOAD_TRUNCATED_IMAGES is off
    opaque_8bit = im.mode in ("RGB", "L") and "transparency" not in im.info
    im = _fix_cmyk_polarity(im)
    upright_as_stored = orientation == 1
    if orientation != 1:
        try:
            im = ImageOps.exif_transpose(im)
        except Exception as e:  # a malformed orientation entry: keep the pixels as stored
            messages.append(f"EXIF orientation could not be applied ({type(e).__name__}); image used as stored")
            original = (file_w, file_h)
            upright_as_stored = True

    w, h = im.size
    if max(w, h) > max_side:
        k = max_side / max(w, h)
        size = (max(1, round(w * k)), max(1, round(h * k)))
        if im.mode not in ("RGB", "L", "RGBA", "LA"):
            im = Image.fromarray(_to_rgb(im, messages))
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    rgb = _to_rgb(im, messages)
    if rgb.shape[1] != original[0]:
        messages.append(f"image reduced from {original[0]}x{original[1]} to {rgb.shape[1]}x{rgb.shape[0]} px")
    scale = rgb.shape[1] / original[0]
    focal = None if focal_file is None else focal_file * scale
    if focal is not None and not (0.2 * max(rgb.shape[:2]) < focal < 20 * max(rgb.shape[:2])):
        messages.append(f"EXIF focal length ({focal:.0f} px) is implausible for this image and was ignored")
        focal = None
    return LoadedImage(rgb=rgb, path=path, original_size=original, scale=float(scale),
                       exif_focal_px=focal, warnings=messages, format=fmt,
                       as_stored=upright_as_stored and opaque_8bit)
