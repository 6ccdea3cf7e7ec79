"""decode_image(): formats, colour modes, EXIF orientation, reduced decode, bad data."""

from __future__ import annotations

import importlib
import io
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from glimpse.ingest import HEIC_MISSING_REASON, DecodeError, decode_image

decode_mod = importlib.import_module("glimpse.ingest.decode")

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def split_image(w: int, h: int, mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue."""
    im = Image.new("RGB", (w, h), BLUE)
    im.paste(RED, (0, 0, w // 2, h))
    return im.convert(mode) if mode != "RGB" else im


def close(pixel, expected, tol=40) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected))


def reason(data: bytes, **kw) -> str:
    with pytest.raises(DecodeError) as info:
        decode_image(data, **kw)
    return info.value.reason


@pytest.fixture(params=["simplejpeg", "pillow"])
def jpeg_backend(request, monkeypatch):
    """Run JPEG tests through both decoders (simplejpeg is optional)."""
    if request.param == "simplejpeg":
        if decode_mod._simplejpeg is None:
            pytest.skip("simplejpeg not installed")
        monkeypatch.setattr(decode_mod, "USE_SIMPLEJPEG", True)
    else:
        monkeypatch.setattr(decode_mod, "USE_SIMPLEJPEG", False)
    return request.param


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "fmt, kw",
    [
        ("JPEG", {"quality": 95}),
        ("PNG", {}),
        ("WEBP", {"quality": 95}),
        ("GIF", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
    ],
)
def test_every_format_decodes_to_rgb(fmt, kw, jpeg_backend):
    data = encode(split_image(64, 32), fmt, **kw)
    im = decode_image(data)
    assert im.mode == "RGB"
    assert im.size == (64, 32) and im.info["original_size"] == (64, 32)
    assert close(im.getpixel((5, 16)), RED) and close(im.getpixel((58, 16)), BLUE)


def test_gif_first_frame():
    frames = [Image.new("RGB", (20, 20), RED), Image.new("RGB", (20, 20), BLUE)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    im = decode_image(buf.getvalue())
    assert im.getpixel((10, 10)) == RED


def test_heic_when_pillow_heif_installed():
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif not installed")
    buf = io.BytesIO()
    pillow_heif.from_pillow(split_image(64, 32)).save(buf, quality=95)
    data = buf.getvalue()
    assert data[4:8] == b"ftyp"
    im = decode_image(data, target=16)
    assert im.mode == "RGB" and im.info["original_size"] == (64, 32)
    assert close(im.getpixel((2, im.height // 2)), RED, 60)
    assert close(im.getpixel((im.width - 3, im.height // 2)), BLUE, 60)
    assert decode_mod.heif_available() is True


def test_heic_orientation_applied_once():
    pytest.importorskip("pillow_heif", reason="pillow-heif not installed")
    assert decode_mod.heif_available()
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    split_image(40, 20).save(buf, "HEIF", exif=exif.tobytes(), quality=95)
    im = decode_image(buf.getvalue())  # libheif applies the rotation; we must not again
    assert im.size == (20, 40) and im.info["original_size"] == (20, 40)
    assert close(im.getpixel((10, 3)), RED, 60) and close(im.getpixel((10, 36)), BLUE, 60)


def test_heic_without_pillow_heif_has_clear_reason(monkeypatch):
    monkeypatch.setattr(decode_mod, "_heif_state", False)  # as if the import had failed
    fake_heic = struct.pack(">I", 24) + b"ftypheic" + b"\0\0\0\0mif1heic" + b"\0" * 64
    assert reason(fake_heic) == HEIC_MISSING_REASON == "HEIC support needs the heic extra: pip install 'glimpse-retrieval[heic]'"


# --------------------------------------------------------------------------- colour


def test_rgba_is_composited_on_white():
    a = np.zeros((10, 30, 4), np.uint8)
    a[:, :10] = (255, 0, 0, 0)  # fully transparent red -> white, not red/black
    a[:, 10:20] = (255, 0, 0, 128)  # half transparent red -> pink
    a[:, 20:] = (0, 0, 255, 255)  # opaque blue stays blue
    for fmt in ("PNG", "WEBP"):
        im = decode_image(encode(Image.fromarray(a), fmt, lossless=True))
        assert im.mode == "RGB"
        assert close(im.getpixel((5, 5)), WHITE, 2)
        assert close(im.getpixel((15, 5)), (255, 127, 127), 3)
        assert close(im.getpixel((25, 5)), BLUE, 2)


def test_palette_transparency_and_la_on_white():
    p = Image.new("P", (10, 10), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black, 1 red
    p.paste(1, (5, 0, 10, 10))
    for fmt in ("PNG", "GIF"):
        im = decode_image(encode(p, fmt, transparency=0))
        assert im.getpixel((1, 1)) == WHITE  # transparent black -> white
        assert im.getpixel((8, 1)) == RED
    la = Image.merge("LA", [Image.new("L", (4, 4), 0), Image.new("L", (4, 4), 0)])
    assert decode_image(encode(la, "PNG")).getpixel((0, 0)) == WHITE


def test_16bit_greyscale_is_rescaled_not_clipped():
    a = np.array([[0, 16384, 32768, 65535]], np.uint16).repeat(4, 0)
    src = Image.fromarray(a)  # mode I;16
    for fmt in ("PNG", "TIFF"):
        im = decode_image(encode(src, fmt))
        row = [im.getpixel((x, 0))[0] for x in range(4)]
        assert row[0] == 0 and row[3] == 255
        assert 60 <= row[1] <= 68 and 124 <= row[2] <= 132, row


def test_float_tiff_is_rescaled():
    a = np.array([[0.0, 0.5, 1.0]], np.float32).repeat(3, 0)
    im = decode_image(encode(Image.fromarray(a), "TIFF"))
    assert [im.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_cmyk_greyscale_and_bilevel(jpeg_backend):
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    for fmt in ("JPEG", "TIFF"):
        assert close(decode_image(encode(cyan, fmt)).getpixel((8, 8)), (0, 255, 255), 12)
    grey = decode_image(encode(Image.new("L", (16, 16), 100), "JPEG"))
    assert grey.mode == "RGB" and close(grey.getpixel((8, 8)), (100, 100, 100), 3)
    bw = Image.new("1", (16, 16), 1)
    assert decode_image(encode(bw, "PNG")).getpixel((3, 3)) == WHITE


# --------------------------------------------------------------------------- orientation


def with_orientation(im: Image.Image, fmt: str, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(im, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))


def test_exif_orientation_6_rotates_pixels_and_size(jpeg_backend):
    # Stored 40x20, left red / right blue; orientation 6 = display rotated 90 deg clockwise,
    # so the displayed image is 20x40 with red on top.
    im = decode_image(with_orientation(split_image(40, 20), "JPEG", 6))
    assert im.size == (20, 40) and im.info["original_size"] == (20, 40)
    assert close(im.getpixel((10, 5)), RED) and close(im.getpixel((10, 34)), BLUE)


@pytest.mark.parametrize(
    "orientation, size, red_at",
    [
        (1, (40, 20), (5, 10)),
        (3, (40, 20), (34, 10)),  # 180: red on the right
        (8, (20, 40), (10, 34)),  # 90 counter-clockwise: red at the bottom
        (2, (40, 20), (34, 10)),  # mirrored
    ],
)
def test_other_orientations(orientation, size, red_at):
    im = decode_image(with_orientation(split_image(40, 20), "PNG", orientation))
    assert im.size == size and im.info["original_size"] == size
    assert close(im.getpixel(red_at), RED, 2)


def test_orientation_with_reduced_decode(jpeg_backend):
    data = with_orientation(split_image(1600, 800), "JPEG", 6)
    im = decode_image(data, target=100)
    assert im.info["original_size"] == (800, 1600)  # full size, as displayed
    assert 100 <= min(im.size) < 200 and im.width < im.height
    assert close(im.getpixel((im.width // 2, 10)), RED) and close(im.getpixel((im.width // 2, im.height - 10)), BLUE)


# --------------------------------------------------------------------------- reduced decode


def test_jpeg_draft_keeps_short_side_at_least_target(jpeg_backend):
    data = encode(split_image(1600, 1200), "JPEG", quality=90)
    im = decode_image(data, target=224)
    assert im.size == (400, 300)  # 1/4 scale: 300 >= 224 and 1/8 would give 150
    assert im.info["original_size"] == (1600, 1200)
    assert decode_image(data).size == (1600, 1200)  # no target: full size
    assert decode_image(data, target=2000).size == (1600, 1200)  # never upscaled


def test_non_jpeg_is_box_reduced_to_near_target():
    im = decode_image(encode(split_image(1000, 900), "PNG"), target=224)
    assert im.size == (250, 225) and im.info["original_size"] == (1000, 900)
    assert close(im.getpixel((10, 100)), RED, 2) and close(im.getpixel((240, 100)), BLUE, 2)


# --------------------------------------------------------------------------- bad data


def test_empty_and_not_an_image():
    assert reason(b"") == "empty file"
    assert reason(b"hello, this is a text file\n" * 10) == "not an image (unrecognised format)"


def test_truncated_jpeg_is_an_error_not_grey(jpeg_backend):
    data = encode(split_image(256, 256), "JPEG", quality=90)
    assert reason(data[: len(data) // 2]) == "truncated image data"
    assert reason(data[: len(data) // 2], target=64) == "truncated image data"


def test_truncated_jpeg_even_when_pillow_is_told_to_accept_them(jpeg_backend, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = encode(split_image(256, 256), "JPEG", quality=90)
    assert reason(data[: len(data) // 2]) == "truncated image data"


def test_truncated_png_is_an_error():
    data = encode(Image.effect_noise((128, 128), 64).convert("RGB"), "PNG")
    assert reason(data[: len(data) // 2]) == "truncated image data"


def test_too_many_pixels_checked_before_decoding(recwarn, big_png):
    data = big_png(20000, 20000)  # 400 MP, a few tens of KB
    assert len(data) < 200_000
    r = reason(data)
    assert r.startswith("too many pixels") and "20000x20000" in r
    # 100 MP is over Pillow's own warning threshold: our check wins, with no
    # DecompressionBombWarning leaking out.
    r = reason(big_png(10000, 10000))
    assert r.startswith("too many pixels")
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    # The limit is a parameter.
    assert reason(encode(split_image(40, 20), "PNG"), max_pixels=799).startswith("too many pixels")
    assert decode_image(encode(split_image(40, 20), "PNG"), max_pixels=800).size == (40, 20)


def test_pillow_bomb_error_is_reported_not_raised(monkeypatch):
    # Some Pillow plugins (TIFF tiles, GIF frames, MPO) check Pillow's global limit on
    # their own; their DecompressionBombError must end as a DecodeError with a reason.
    def bomb(fp):
        raise Image.DecompressionBombError(
            "Image size (400 pixels) exceeds limit of 20 pixels, could be decompression bomb DOS attack."
        )

    monkeypatch.setattr(decode_mod, "_identify", bomb)
    assert reason(encode(split_image(20, 20), "PNG")) == "too many pixels (Image size (400 pixels) exceeds limit of 20 pixels)"


def test_pillow_global_limit_is_left_alone(big_png):
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(DecodeError):
        decode_image(big_png(10000, 10000))
    decode_image(encode(split_image(20, 20), "PNG"))
    assert Image.MAX_IMAGE_PIXELS == before


def test_no_warnings_for_normal_images():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fmt in ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"):
            im = decode_image(encode(split_image(300, 300), fmt), target=100)
            assert 100 <= im.width == im.height < 200  # reduced (palette GIF converted first)
            w, h = im.size
            assert close(im.getpixel((5, h // 2)), RED) and close(im.getpixel((w - 5, h // 2)), BLUE), fmt


def test_corrupt_data_after_a_valid_header():
    data = bytearray(encode(Image.effect_noise((64, 64), 64).convert("RGB"), "PNG"))
    data[60:200] = b"\xff" * 140  # garbage inside the compressed stream
    r = reason(bytes(data))
    assert r and r != "not an image (unrecognised format)"


# --------------------------------------------------------------------------- PNG metadata and checksums


def png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def with_chunk(png: bytes, chunk: bytes) -> bytes:
    """``chunk`` inserted right after IHDR (8-byte signature + 25-byte IHDR)."""
    return png[:33] + chunk + png[33:]


def broken_crc(png: bytes, kind: bytes) -> bytes:
    """The PNG with the checksum of its first ``kind`` chunk flipped."""
    data = bytearray(png)
    start = data.index(kind) - 4
    (length,) = struct.unpack_from(">I", data, start)
    data[start + 8 + length] ^= 0xFF
    return bytes(data)


SPLIT_PNG = encode(split_image(64, 48), "PNG")


@pytest.mark.parametrize("kind", [b"IHDR", b"IDAT", b"IEND"])
def test_png_with_a_bad_checksum_is_kept_when_its_pixels_decode(kind):
    im = decode_image(broken_crc(SPLIT_PNG, kind))
    assert im.size == (64, 48) and close(im.getpixel((5, 20)), RED) and close(im.getpixel((60, 20)), BLUE)


def test_png_with_a_bad_text_checksum_is_kept():
    im = decode_image(broken_crc(with_chunk(SPLIT_PNG, png_chunk(b"tEXt", b"Comment\0hello")), b"tEXt"))
    assert im.size == (64, 48)


def test_png_with_corrupt_pixels_and_a_bad_checksum_is_still_an_error():
    data = bytearray(broken_crc(SPLIT_PNG, b"IDAT"))
    start = data.index(b"IDAT") + 4
    data[start : start + 20] = b"\xff" * 20
    assert reason(bytes(data)) != ""


def test_oversized_png_text_is_dropped_unread(monkeypatch):
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_CHUNK", 4096)  # the real bound is 1 MiB
    big = with_chunk(SPLIT_PNG, png_chunk(b"tEXt", b"Comment\0" + b"x" * 100_000))
    seen = []
    real = decode_mod._decode
    monkeypatch.setattr(decode_mod, "_decode", lambda data, *a: seen.append(len(data)) or real(data, *a))
    im = decode_image(big)
    assert im.size == (64, 48) and seen == [len(SPLIT_PNG)]  # the text never reached Pillow


def test_png_whose_profile_inflates_past_the_bound_is_decoded_without_it():
    profile = zlib.compress(b"\0" * (50 << 20), 9)  # 50 MB once inflated, 50 KB stored
    im = decode_image(with_chunk(SPLIT_PNG, png_chunk(b"iCCP", b"icc\0\0" + profile)))
    assert im.size == (64, 48) and close(im.getpixel((5, 20)), RED)


def test_png_with_a_200_mb_text_chunk_decodes():
    body = bytearray(b"Comment\0") + bytearray(200 << 20)  # built in place: one 200 MB buffer
    data = with_chunk(SPLIT_PNG, png_chunk(b"tEXt", bytes(body)))
    del body
    assert decode_image(data).size == (64, 48)


def test_corrupt_exif_warnings_do_not_reach_the_terminal(tmp_path):
    bad_exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00"  # five tags announced, none there
    path = tmp_path / "bad-exif.jpg"
    split_image(64, 48).save(path, "JPEG", exif=bad_exif)
    script = (
        "import sys, warnings\n"
        "from glimpse.ingest import decode_image\n"
        "from PIL import Image\n"
        "im = decode_image(open(sys.argv[1], 'rb').read())\n"
        "print(im.size)\n"
        # Pillow itself warns without our filter: the file does exercise the warning.
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    Image.open(sys.argv[1]).getexif()\n"
        "print(bool(seen))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["(64,", "48)", "True"] and out.stderr == ""
