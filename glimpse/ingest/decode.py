"""Decode image bytes into RGB Pillow images, safely and fast.

What :func:`decode_image` guarantees
------------------------------------
* **Formats**: JPEG, PNG, WebP, GIF (first frame), BMP, TIFF (first page), and whatever
  else the installed Pillow can identify; HEIC/HEIF when ``pillow-heif`` is installed.
  The HEIF opener is registered lazily, once, the first time HEIF bytes are seen;
  without ``pillow-heif`` such files fail with :data:`HEIC_MISSING_REASON`.
* **Colour**: the result is always mode ``RGB``. Transparency (RGBA, LA, PA, palette or
  colour-key transparency) is composited on **white**; 16-bit / 32-bit / float greyscale is
  rescaled to 8 bits (not clipped); CMYK, YCbCr, 1-bit, palette and LAB are converted.
* **Orientation**: the EXIF (or XMP) orientation tag is applied, so pixels and
  ``image.info['original_size']`` are as the image is *displayed*.
  ``original_size`` is the full size before any reduction for ``target``.
* **Speed**: with ``target``, JPEGs are decoded at 1/2, 1/4 or 1/8 scale inside libjpeg
  (DCT scaling), and any image is then box-reduced by an integer factor, so the
  returned short side lies in ``[target, 2*target)`` when the original is at least that
  big (never upscaled). JPEGs go through ``simplejpeg`` (libjpeg-turbo's scaled decode
  straight into an array) when it is installed (the ``fast`` extra), else Pillow's draft
  mode; both give the same pixels (checked on all 857 captioned photos). Pillow still
  decodes whatever simplejpeg refuses (CMYK, odd markers) and has the last word on what
  is accepted. With Pillow 13.0, on the 857 captioned 224x224 JPEGs, one thread, under
  load: :func:`decode_image` 0.25 CPU ms per image with simplejpeg, 0.40 with Pillow
  (whose own decode call takes 0.39 of that; simplejpeg's 0.17). Measured earlier, with
  an older Pillow, per core, target 224 (draft / full decode):

  ==========================  ===============  ===============
  JPEG set                    Pillow img/s     simplejpeg img/s
  ==========================  ===============  ===============
  857 x 224x224 (captioned)   6900 / 7300      6700 / 6750
  1600x1200 photo-like, q90   300 / 217        297 / 185
  1600x1200 smooth, q90       675 / 381        629 / 293
  ==========================  ===============  ===============

  (At 224x224 the draft scale is 1, so both columns do the same work.) Draft helps
  1.4-1.8x on 1600x1200 (entropy decoding, which scaling cannot skip,
  dominates noisy files).
* **Safety**: the pixel count is checked from the header *before* any pixel data is
  decoded (``max_pixels``, default :data:`DEFAULT_MAX_PIXELS` = Pillow's own default
  limit of 89,478,485 px, about 0.25 GiB of RGBA). We identify the file without going
  through ``Image.open``'s decompression-bomb check, so Pillow's
  ``DecompressionBombWarning`` is not emitted for files we skip anyway, and we never
  change ``PIL.Image.MAX_IMAGE_PIXELS`` (a process-wide setting that belongs to the
  application). Some Pillow plugins (TIFF tiles, GIF frames, MPO) still apply that
  global limit on their own; a ``DecompressionBombError`` from them is reported as the
  same "too many pixels" reason. To accept images beyond 2x Pillow's limit, raise both
  ``max_pixels`` and ``PIL.Image.MAX_IMAGE_PIXELS``.
* **Errors**: anything wrong with the data raises :class:`DecodeError` with a short
  human ``reason`` (``"empty file"``, ``"truncated image data"``,
  ``"not an image (unrecognised format)"``, ``"too many pixels (...)"``...). Pixel data is
  fully loaded inside the guarded block, so lazily-decoded errors surface here, not
  later. Truncated files are errors, not grey-filled images. For JPEG this holds even if
  the application sets ``ImageFile.LOAD_TRUNCATED_IMAGES = True``; for other formats
  we follow that setting (default False: truncation is an error).
* **PNG metadata never costs the pixels**: an ancillary chunk (text, ICC profile, EXIF,
  private data) stored larger than ``PngImagePlugin.MAX_TEXT_CHUNK`` (1 MiB, Pillow's own
  bound on a decompressed text or profile, which it would refuse anyway) is dropped
  before Pillow sees the file, so a 200 MB text chunk is never copied or parsed. A PNG
  that still fails (a bad chunk checksum, a profile that inflates past that bound) is
  retried once from its pixel chunks alone (``IHDR``, ``PLTE``, ``tRNS``, ``IDAT``, with
  checksums recomputed); if the pixels decode, the image is kept. This needs no global
  setting (``LOAD_TRUNCATED_IMAGES`` would also accept truncated files).
* **Warnings**: Pillow's warnings about malformed EXIF/TIFF metadata ("Corrupt EXIF
  data", "Possibly corrupt EXIF ...", "Metadata Warning ...") are filtered when this module
  is imported: the orientation then falls back to none and the date to the file's, so
  they say nothing to act on, and ``warnings.catch_warnings`` cannot be used per call from
  worker threads (it swaps a process-wide list).

Thread-safety: :func:`decode_image` may be called from many threads at once; Pillow and
simplejpeg release the GIL while decoding.
"""

from __future__ import annotations

import datetime as dt
import io
import struct
import threading
import warnings

from PIL import Image, ImageFile, UnidentifiedImageError

from ..extras import missing_extra
from .colour import reduce, to_rgb
from .png import PNG_SIGNATURE, oversized_metadata, png_chunks, png_keeping, pixels_only

try:  # optional, faster JPEG decoder (libjpeg-turbo)
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - depends on the environment
    _simplejpeg = None

#: Default pixel limit, the same number as Pillow's default ``Image.MAX_IMAGE_PIXELS``.
DEFAULT_MAX_PIXELS = 89_478_485

#: Decode JPEGs with simplejpeg when installed: the same pixels as Pillow's, in 0.6x the CPU
#: time with Pillow 13 (see the module docstring).
USE_SIMPLEJPEG = True

HEIC_MISSING_REASON = missing_extra("HEIC support", "heic")

warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")  # EXIF/TIFF tags
warnings.filterwarnings("ignore", message="Possibly corrupt EXIF", category=UserWarning)  # MakerNote


# ISO-BMFF brands of HEIF/HEIC (and AVIF, which recent Pillow also reads natively).
_HEIF_BRANDS = {
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs",
    b"mif1", b"mif2", b"msf1", b"avif", b"avis",
}  # fmt: skip
_AVIF_BRANDS = {b"avif", b"avis"}

# EXIF orientation -> transpose method that undoes it.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class DecodeError(Exception):
    """A file that is not a readable image; ``reason`` is shown to the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- HEIF


_heif_lock = threading.Lock()
_heif_state: bool | None = None  # None: not tried yet; True: registered; False: unavailable


def heif_available() -> bool:
    """Register pillow-heif's opener with Pillow (once) and say whether HEIC can be read."""
    global _heif_state
    if _heif_state is None:
        with _heif_lock:
            if _heif_state is None:
                try:
                    import pillow_heif

                    pillow_heif.register_heif_opener()
                    _heif_state = True
                except Exception:  # ImportError, or a broken native library
                    _heif_state = False
    return _heif_state


def _isobmff_brand(data: bytes) -> bytes | None:
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return data[8:12]
    return None


# --------------------------------------------------------------------------- opening


def _identify(fp: io.BytesIO) -> ImageFile.ImageFile:
    """``Image.open`` without its decompression-bomb check (we apply our own limit).

    Mirrors the identification loop of ``PIL.Image.open``; falls back to ``Image.open``
    if Pillow's registry ever changes shape.
    """
    registry = getattr(Image, "OPEN", None)
    ids = getattr(Image, "ID", None)
    if not isinstance(registry, dict) or not isinstance(ids, list):  # pragma: no cover
        return Image.open(fp)
    prefix = fp.read(16)
    tried: set[str] = set()
    for loader in (Image.preinit, Image.init):
        loader()
        for fmt in list(ids):
            if fmt in tried:
                continue
            tried.add(fmt)
            factory, accept = registry.get(fmt, (None, None))
            if factory is None:
                continue
            try:
                ok = accept(prefix) if accept else True
                if ok and not isinstance(ok, str):  # a str is a "possible format" warning
                    fp.seek(0)
                    return factory(fp, "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue  # not this format
    raise UnidentifiedImageError("cannot identify image file")


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF must not lose the image
        return 1
    return value if value in _TRANSPOSE else 1


def _capture_time(im: Image.Image) -> float | None:
    """EXIF DateTimeOriginal (else DateTime) as a timestamp; camera clocks carry no zone, so
    it is read as local time, like the date filters' dates."""
    try:
        exif = im.getexif()
        value = exif.get_ifd(0x8769).get(0x9003) or exif.get(0x0132)
        if not value:
            return None
        return dt.datetime.strptime(str(value).strip("\x00 ")[:19], "%Y:%m:%d %H:%M:%S").timestamp()
    except Exception:  # malformed or missing EXIF dates are common; the file mtime serves
        return None


def _too_many_pixels(width: int, height: int, max_pixels: int) -> DecodeError:
    return DecodeError(
        f"too many pixels ({width}x{height} = {width * height / 1e6:.1f} MP, "
        f"limit {max_pixels / 1e6:.1f} MP)"
    )


def _reason(exc: BaseException) -> str:
    msg = str(exc)
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (unrecognised format)"
    if isinstance(exc, Image.DecompressionBombError):
        return f"too many pixels ({msg.split(',')[0]})"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    low = msg.lower()
    if "truncated" in low or "premature end" in low or "unexpected end" in low:
        return "truncated image data"
    if isinstance(exc, EOFError):
        return "truncated image data"
    return f"corrupt or unsupported image data ({type(exc).__name__}: {msg})" if msg else (
        f"corrupt or unsupported image data ({type(exc).__name__})"
    )


# --------------------------------------------------------------------------- JPEG


def _jpeg_scale(width: int, height: int, target: int | None) -> int:
    """Largest libjpeg scale divisor (1, 2, 4, 8) that keeps the short side >= target."""
    if not target:
        return 1
    short = min(width, height)
    for s in (8, 4, 2):
        if short // s >= target:
            return s
    return 1


def _decode_simplejpeg(data: bytes, im: ImageFile.ImageFile, target: int | None) -> Image.Image | None:
    """Decode a JPEG with libjpeg-turbo via simplejpeg; None means "let Pillow do it"."""
    if im.mode not in ("RGB", "L") or len(getattr(im, "tile", ())) != 1:
        return None  # CMYK / YCCK / unusual layouts: Pillow handles them
    width, height = im.size
    s = _jpeg_scale(width, height, target)
    try:
        # Minimum sizes of exactly size/s force libjpeg's 1/s scale (a power of two, the
        # fast path); strict=True turns "premature end" into an error instead of grey.
        arr = _simplejpeg.decode_jpeg(
            data,
            colorspace="RGB",
            min_width=-(-width // s),
            min_height=-(-height // s),
            strict=True,
        )
    except (ValueError, RuntimeError):
        return None  # Pillow decides (and words) what is wrong, or accepts a quirky file
    return Image.fromarray(arr)


# --------------------------------------------------------------------------- main


def decode_image(
    data: bytes, target: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Bytes -> RGB image with EXIF orientation applied; see the module docstring.

    With ``target``, the image may be returned reduced (short side in
    ``[target, 2*target)``); ``image.info['original_size']`` is the displayed size of the
    full image, and ``image.info['taken']`` its EXIF capture time (a timestamp) or None. Raises :class:`DecodeError` with a human ``reason``.
    """
    if not data:
        raise DecodeError("empty file")
    if not data.startswith(PNG_SIGNATURE):
        return _decode(data, target, max_pixels)
    if any(oversized_metadata(kind, end - start - 12) for kind, start, end in png_chunks(data)):
        data = png_keeping(data, lambda kind, length: not oversized_metadata(kind, length), fix_crc=False)
    try:
        return _decode(data, target, max_pixels)
    except DecodeError as failed:
        if failed.reason.startswith("too many pixels"):
            raise
        try:
            return _decode(png_keeping(data, pixels_only, fix_crc=True), target, max_pixels)
        except DecodeError:
            raise failed from None


def image_pixels(data: bytes) -> int:
    """Width x height as the file's header gives it, nothing decoded (Pillow reads sizes
    lazily); 0 where the header cannot be read (decoding it then says why). Reads the header
    as :func:`decode_image` does: oversized PNG metadata dropped, or else only the pixel chunks."""
    if _isobmff_brand(data) is not None:
        heif_available()  # registers the opener that reads a HEIF header
    png = data.startswith(PNG_SIGNATURE)
    readings = (lambda: png_keeping(data, lambda kind, length: not oversized_metadata(kind, length), fix_crc=False) if png else data,
                lambda: png_keeping(data, pixels_only, fix_crc=True) if png else b"")
    for reading in readings:  # the second only where the first fails
        try:
            width, height = _identify(io.BytesIO(reading())).size
            return max(width, 0) * max(height, 0)
        except Exception:  # Pillow raises many types for bad data
            continue
    return 0


def _decode(data: bytes, target: int | None, max_pixels: int) -> Image.Image:
    """:func:`decode_image` of any bytes, as they are."""
    brand = _isobmff_brand(data)
    # Any ISO-BMFF file registers the HEIF opener (brands vary: heic, mif1, MiHE...).
    if brand is not None and not heif_available() and brand in _HEIF_BRANDS - _AVIF_BRANDS:
        raise DecodeError(HEIC_MISSING_REASON)
    try:
        im = _identify(io.BytesIO(data))
        width, height = im.size
        if width <= 0 or height <= 0:
            raise DecodeError(f"invalid image size {width}x{height}")
        if width * height > max_pixels:
            raise _too_many_pixels(width, height, max_pixels)
        fmt = im.format
        out = None
        if fmt in ("JPEG", "MPO"):
            if USE_SIMPLEJPEG and _simplejpeg is not None:
                out = _decode_simplejpeg(data, im, target)
            if out is None:
                s = _jpeg_scale(width, height, target)
                if s > 1:
                    im.draft(im.mode, (width // s, height // s))
        if out is None:
            im.load()  # inside the try: truncation and corruption surface here
            if getattr(im, "_ended", False):  # Pillow padded a premature JPEG end
                raise DecodeError("truncated image data")
            out = im
        orientation = _orientation(im)
        taken = _capture_time(im)
        out = reduce(to_rgb(out), target)  # RGB first: palette indices cannot be averaged
        if orientation != 1:
            out = out.transpose(_TRANSPOSE[orientation])
    except DecodeError:
        raise
    except Exception as exc:  # Pillow raises many types for bad data
        raise DecodeError(_reason(exc)) from None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    out.info["original_size"] = (width, height)
    out.info["taken"] = taken
    return out
