"""recon_core.images: loading every mode, every error path, fitting, saving, atomic writes."""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from recon_core import images
from recon_core.errors import BadInput, ImageError, ReconError, UnknownName
from recon_core.images import (
    FIT_MODES,
    atomic_write_bytes,
    atomic_write_text,
    example_image,
    fit_image,
    load_image,
    make_grid,
    save_image,
    to_uint8,
)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# helpers


def _rng_image(h=24, w=32, c=3, seed=0) -> np.ndarray:
    a = np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)
    return a[:, :, 0] if c == 1 else a


def _encode(im: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _write(tmp_path, name, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _png_with_size(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR is patched to claim width x height (CRC fixed up)."""
    d = bytearray(_encode(Image.fromarray(_rng_image(4, 4))))
    assert d[12:16] == b"IHDR"
    d[16:24] = struct.pack(">II", width, height)
    d[29:33] = struct.pack(">I", zlib.crc32(bytes(d[12:29])))  # CRC covers type + data
    return bytes(d)


@pytest.fixture(autouse=True)
def _pil_globals_untouched():
    """load_image swaps PIL's globals during a call; they must be restored after every test."""
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    yield
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


# ---------------------------------------------------------------------------------------------
# error paths


def test_image_error_is_bad_input():
    assert issubclass(ImageError, BadInput) and ImageError("x").exit_code == 2


def test_missing_file(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(ImageError, match=r"nope\.png'?: no such file"):
        load_image(p)


def test_directory(tmp_path):
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")
def test_fifo_is_refused_without_blocking(tmp_path):
    p = tmp_path / "pipe.png"
    os.mkfifo(p)
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(p)


def test_zero_byte_file(tmp_path):
    p = _write(tmp_path, "empty.png", b"")
    with pytest.raises(ImageError, match=r"empty\.png.*empty \(0 bytes\)"):
        load_image(p)


def test_text_named_png(tmp_path):
    p = _write(tmp_path, "notes.png", b"hello, this is not an image\n" * 10)
    with pytest.raises(ImageError, match=r"notes\.png.*not an image file"):
        load_image(p)


def test_truncated_png(tmp_path):
    d = _encode(Image.fromarray(_rng_image(64, 64)))
    p = _write(tmp_path, "cut.png", d[: len(d) // 2])
    with pytest.raises(ImageError, match=r"cut\.png.*truncated or corrupt"):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    d = _encode(Image.fromarray(_rng_image(64, 64)), "JPEG", quality=95)
    p = _write(tmp_path, "cut.jpg", d[: len(d) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg.*truncated or corrupt"):
        load_image(p)


def test_truncated_fails_even_if_pil_global_allows_it(tmp_path, monkeypatch):
    # another library may have set LOAD_TRUNCATED_IMAGES = True process-wide
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    d = _encode(Image.fromarray(_rng_image(64, 64)))
    p = _write(tmp_path, "cut.png", d[: len(d) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(p)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_decompression_bomb_header(tmp_path):
    p = _write(tmp_path, "bomb.png", _png_with_size(100_000, 100_000))
    with pytest.raises(ImageError, match=r"bomb\.png.*10000000000 pixels, more than the limit of 64000000"):
        load_image(p)


@pytest.mark.parametrize("factor", [1.5, 3.0])
def test_max_pixels_from_header(tmp_path, factor):
    # 1.5x: PIL only warns (turned into an error); 3x: PIL raises its own DecompressionBombError
    p = _write(tmp_path, "big.png", _encode(Image.fromarray(_rng_image(30, 40))))
    with pytest.raises(ImageError, match=r"big\.png.*1200 pixels, more than the limit of"):
        load_image(p, max_pixels=int(1200 / factor))
    assert load_image(p, max_pixels=1200).shape == (1, 3, 30, 40)


def test_zero_width_png(tmp_path):
    p = _write(tmp_path, "flat.png", _png_with_size(0, 4))
    with pytest.raises(ImageError, match=r"flat\.png.*size of 0x4"):
        load_image(p)


def test_png_named_jpg_loads_by_content(tmp_path):
    a = _rng_image()
    x = load_image(_write(tmp_path, "really_png.jpg", _encode(Image.fromarray(a))))
    assert np.array_equal(to_uint8(x), a)


def test_eps_is_refused(tmp_path):
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    p = _write(tmp_path, "x.eps", eps)
    with pytest.raises(ImageError, match="not an image file"):
        load_image(p)


def test_bad_arguments(tmp_path):
    p = _write(tmp_path, "a.png", _encode(Image.fromarray(_rng_image())))
    with pytest.raises(ImageError, match="channels must be 1 or 3"):
        load_image(p, channels=2)
    with pytest.raises(ImageError, match="max_pixels must be a positive integer"):
        load_image(p, max_pixels=0)


def test_float_image_out_of_range(tmp_path):
    a = np.full((4, 5), 300.0, dtype=np.float32)
    p = _write(tmp_path, "f.tif", _encode(Image.fromarray(a, mode="F"), "TIFF"))
    with pytest.raises(ImageError, match=r"f\.tif.*float pixels range over \[300, 300\]"):
        load_image(p)


def test_int32_image_out_of_16bit_range(tmp_path):
    a = np.full((4, 5), 70000, dtype=np.int32)
    p = _write(tmp_path, "i.tif", _encode(Image.fromarray(a, mode="I"), "TIFF"))
    with pytest.raises(ImageError, match="not 16-bit data"):
        load_image(p)


def test_messages_are_one_line(tmp_path):
    p = _write(tmp_path, "multi\nline.png", b"junk")
    with pytest.raises(ImageError) as e:
        load_image(p)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------
# modes and values


def test_rgb_png_exact(tmp_path):
    a = _rng_image()
    x = load_image(_write(tmp_path, "a.png", _encode(Image.fromarray(a))))
    assert x.dtype == torch.float32 and x.shape == (1, 3, 24, 32)
    assert torch.equal(x, torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255)


def test_grey_png(tmp_path):
    a = _rng_image(c=1)
    x = load_image(_write(tmp_path, "g.png", _encode(Image.fromarray(a, mode="L"))))
    assert x.shape == (1, 1, 24, 32)
    assert torch.equal(x[0, 0], torch.from_numpy(a).float() / 255)


def test_16bit_png_scaling(tmp_path):
    a = np.array([[0, 32768, 65535]], dtype=np.uint16)
    im = Image.fromarray(a)
    assert im.mode.startswith("I;16")
    p = _write(tmp_path, "deep.png", _encode(im))
    x = load_image(p)
    assert x.shape == (1, 1, 1, 3)
    assert x[0, 0, 0, 0] == 0.0 and x[0, 0, 0, 2] == 1.0
    assert abs(x[0, 0, 0, 1].item() - 0.5) < 1e-4


def test_mode_I_is_16bit(tmp_path):
    a = np.array([[0, 32768, 65535]], dtype=np.int32)
    x = load_image(_write(tmp_path, "i.tif", _encode(Image.fromarray(a, mode="I"), "TIFF")))
    assert torch.allclose(x.flatten(), torch.tensor([0.0, 32768 / 65535, 1.0]))


def test_float_image(tmp_path):
    a = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    x = load_image(_write(tmp_path, "f.tif", _encode(Image.fromarray(a, mode="F"), "TIFF")))
    assert torch.allclose(x.flatten(), torch.tensor([0.0, 0.25, 1.0]))
    b = np.array([[0.0, 51.0, 255.0]], dtype=np.float32)  # [0, 255] float data
    x = load_image(_write(tmp_path, "f255.tif", _encode(Image.fromarray(b, mode="F"), "TIFF")))
    assert torch.allclose(x.flatten(), torch.tensor([0.0, 0.2, 1.0]))


def test_bilevel(tmp_path):
    im = Image.fromarray(_rng_image(c=1) > 127)
    assert im.mode == "1"
    x = load_image(_write(tmp_path, "b.png", _encode(im)))
    assert x.shape == (1, 1, 24, 32) and set(x.unique().tolist()) <= {0.0, 1.0}


def test_palette(tmp_path):
    rgb = Image.fromarray(_rng_image())
    pal = rgb.quantize(16)
    assert pal.mode == "P"
    x = load_image(_write(tmp_path, "p.png", _encode(pal)))
    want = np.asarray(pal.convert("RGB"))
    assert x.shape == (1, 3, 24, 32) and np.array_equal(to_uint8(x), want)


def test_palette_with_transparency(tmp_path):
    pal = Image.fromarray(_rng_image()).quantize(8)
    x = load_image(_write(tmp_path, "pt.png", _encode(pal, transparency=0)))
    assert x.shape == (1, 3, 24, 32)
    assert np.array_equal(to_uint8(x), np.asarray(pal.convert("RGB")))


def test_rgba_drops_alpha(tmp_path):
    a = _rng_image(c=4)
    a[..., 3] = 0  # fully transparent: compositing would give white, dropping keeps the colours
    x = load_image(_write(tmp_path, "rgba.png", _encode(Image.fromarray(a, mode="RGBA"))))
    assert x.shape == (1, 3, 24, 32) and np.array_equal(to_uint8(x), a[..., :3])


def test_la_drops_alpha(tmp_path):
    a = _rng_image(c=2)
    x = load_image(_write(tmp_path, "la.png", _encode(Image.fromarray(a, mode="LA"))))
    assert x.shape == (1, 1, 24, 32) and np.array_equal(to_uint8(x)[..., 0], a[..., 0])


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.fromarray(_rng_image()).convert("CMYK")
    x = load_image(_write(tmp_path, "c.jpg", _encode(cmyk, "JPEG", quality=95)))
    assert x.shape == (1, 3, 24, 32) and 0 <= x.min() and x.max() <= 1


def test_multiframe_gif_first_frame(tmp_path):
    frames = [Image.new("L", (8, 6), v) for v in (10, 200, 90)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    x = load_image(_write(tmp_path, "anim.gif", buf.getvalue()), channels=1)
    assert x.shape == (1, 1, 6, 8) and torch.allclose(x, torch.full_like(x, 10 / 255))


def test_exif_orientation(tmp_path):
    a = _rng_image(6, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    p = _write(tmp_path, "rot.png", _encode(Image.fromarray(a), exif=exif.tobytes()))
    x = load_image(p)
    assert x.shape == (1, 3, 10, 6)
    assert np.array_equal(to_uint8(x), np.rot90(a, k=-1))


def test_channels_conversion(tmp_path):
    a = _rng_image(c=1)
    x = load_image(_write(tmp_path, "g.png", _encode(Image.fromarray(a))), channels=3)
    assert x.shape == (1, 3, 24, 32) and torch.equal(x[:, 0], x[:, 2])
    rgb = load_image(_write(tmp_path, "c.png", _encode(Image.fromarray(_rng_image()))), channels=3)
    assert rgb.shape[1] == 3


def test_rgb_to_grey_matches_pil_luma(tmp_path):
    skdata = pytest.importorskip("skimage.data")
    a = skdata.astronaut()
    x = load_image(_write(tmp_path, "astro.png", _encode(Image.fromarray(a))), channels=1)
    pil = np.asarray(Image.fromarray(a).convert("L"), dtype=np.float32) / 255
    assert x.shape == (1, 1, 512, 512)
    # same weights; PIL rounds to 8 bits, we keep floats
    assert np.abs(x[0, 0].numpy() - pil).max() <= 0.5 / 255 + 1e-6


def test_real_photos_load_exactly(tmp_path):
    skdata = pytest.importorskip("skimage.data")
    for name, a in (("camera", skdata.camera()), ("coffee", skdata.coffee())):
        x = load_image(_write(tmp_path, f"{name}.png", _encode(Image.fromarray(a))))
        assert x.shape[1] == (1 if a.ndim == 2 else 3)
        assert np.array_equal(to_uint8(x)[..., 0] if a.ndim == 2 else to_uint8(x), a)


# ---------------------------------------------------------------------------------------------
# random bytes: only ImageError or success, never anything else

_PNG = _encode(Image.fromarray(_rng_image(5, 7)))
_MAGIC = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF",
          b"P5\n", b"P6\n", b"8BPS", b"\x00\x00\x01\x00", b"qoif", b"DDS ", b"\x01\xda", b"SIMPLE  ="]


def _load_bytes_or_image_error(tmp_path, data: bytes) -> None:
    p = tmp_path / "fuzz.png"
    p.write_bytes(data)
    try:
        x = load_image(p, max_pixels=1 << 16)  # bounds memory and time per example
    except ImageError as e:
        assert "\n" not in str(e) and str(p) in str(e)
        return
    assert x.dtype == torch.float32 and x.ndim == 4 and x.shape[1] in (1, 3)
    assert bool(torch.isfinite(x).all()) and x.min() >= 0 and x.max() <= 1


_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(tmp_path, data):
    _load_bytes_or_image_error(tmp_path, data)


@_FUZZ
@given(st.sampled_from(_MAGIC), st.binary(max_size=400))
def test_fuzz_magic_prefix(tmp_path, magic, data):
    _load_bytes_or_image_error(tmp_path, magic + data)


@_FUZZ
@given(st.lists(st.tuples(st.integers(0, len(_PNG) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(1, len(_PNG)))
def test_fuzz_mutated_png(tmp_path, edits, keep):
    d = bytearray(_PNG)
    for i, v in edits:
        d[i] = v
    _load_bytes_or_image_error(tmp_path, bytes(d[:keep]))


# ---------------------------------------------------------------------------------------------
# fitting


@pytest.mark.parametrize("mode", FIT_MODES)
@pytest.mark.parametrize("hw", [(80, 100), (100, 80), (64, 64), (200, 150)])
def test_fit_shapes_and_range(mode, hw):
    x = torch.rand(1, 3, *hw)
    y = fit_image(x, 64, mode)
    assert y.shape == (1, 3, 64, 64) and y.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 1
    z = fit_image(x, (48, 64), mode)  # non-square target (H, W)
    assert z.shape == (1, 3, 48, 64)


def test_fit_default_is_crop_resize():
    x = torch.rand(1, 1, 90, 70)
    assert torch.equal(fit_image(x, 32), fit_image(x, 32, "crop-resize"))


def test_fit_crop_too_small():
    x = torch.rand(1, 3, 30, 40)
    with pytest.raises(ImageError, match=r"image is 40x30, smaller than the prior's 64x64; use --fit resize or pad"):
        fit_image(x, 64, "crop")


def test_fit_crop_is_centred_and_exact():
    x = torch.rand(1, 3, 70, 90)
    assert torch.equal(fit_image(x, (64, 80), "crop"), x[..., 3:67, 5:85])


def test_fit_crop_resize_keeps_centre_square():
    x = torch.rand(1, 3, 64, 96)
    assert torch.equal(fit_image(x, 64, "crop-resize"), x[..., :, 16:80])


def test_fit_pad_replicates_edges():
    x = torch.rand(1, 1, 32, 16)
    y = fit_image(x, 32, "pad")  # padded to 32x32 with 8 columns each side; no resize needed
    assert torch.equal(y[..., 8:24], x)
    assert torch.equal(y[..., :8], x[..., :1].expand(-1, -1, -1, 8))
    assert torch.equal(y[..., 24:], x[..., -1:].expand(-1, -1, -1, 8))


def test_fit_resize_is_antialiased():
    # a one-pixel checkerboard averages to grey when downsampled with antialiasing
    x = ((torch.arange(128)[:, None] + torch.arange(128)[None]) % 2).float()[None, None]
    y = fit_image(x, 32, "resize")
    assert torch.allclose(y, torch.full_like(y, 0.5), atol=0.02)


def test_fit_on_real_photo():
    skdata = pytest.importorskip("skimage.data")
    x = torch.from_numpy(skdata.coffee()).permute(2, 0, 1)[None].float() / 255  # 400x600
    for mode in ("crop-resize", "resize", "pad"):
        y = fit_image(x, 64, mode)
        assert y.shape == (1, 3, 64, 64)
        assert abs(y.mean().item() - x.mean().item()) < 0.1
    assert fit_image(x, 64, "crop").shape == (1, 3, 64, 64)


def test_fit_errors():
    with pytest.raises(UnknownName, match=r"unknown fit mode 'croop' \(did you mean 'crop'\?\)"):
        fit_image(torch.rand(1, 3, 8, 8), 4, "croop")
    with pytest.raises(ImageError, match=r"expects an \(N, C, H, W\) tensor"):
        fit_image(torch.rand(3, 8, 8), 4)
    with pytest.raises(ImageError, match="size must be positive"):
        fit_image(torch.rand(1, 3, 8, 8), 0)
    with pytest.raises(ImageError, match=r"size must be an int or \(height, width\)"):
        fit_image(torch.rand(1, 3, 8, 8), 4.5)
    assert fit_image(torch.rand(1, 3, 8, 8), np.int64(4)).shape == (1, 3, 4, 4)


# ---------------------------------------------------------------------------------------------
# saving and atomic writes


@pytest.mark.parametrize("c", [1, 3])
def test_save_load_round_trip_exact(tmp_path, c):
    a = torch.from_numpy(_rng_image(17, 23, c=3)).permute(2, 0, 1)[:c].float() / 255
    p = save_image(a[None], tmp_path / "x.png")
    assert torch.equal(load_image(p), a[None])
    save_image(a, tmp_path / "y.png")  # (C, H, W) also accepted
    assert torch.equal(load_image(tmp_path / "y.png"), a[None])


def test_to_uint8_clamps_rounds_and_zeroes_nan():
    x = torch.tensor([[[-0.5, 0.0, 0.5 / 255, 1.4 / 255, 1.0, 2.0, float("nan")]]])
    assert to_uint8(x)[0, :, 0].tolist() == [0, 0, 0, 1, 255, 255, 0]  # 0.5 rounds half to even
    with pytest.raises(ImageError, match="batch of 2; use make_grid"):
        to_uint8(torch.rand(2, 3, 4, 4))


def test_save_requires_png_name(tmp_path):
    with pytest.raises(ImageError, match=r"x\.jpg.*writes PNG"):
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "x.jpg")
    assert not (tmp_path / "x.jpg").exists()


def test_atomic_write_text_and_bytes(tmp_path):
    p = tmp_path / "m.json"
    atomic_write_text(p, '{"a": "é"}\n')
    assert p.read_text(encoding="utf-8") == '{"a": "é"}\n'
    atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["m.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_atomic_write_failure_leaves_no_temp_and_keeps_old(tmp_path, monkeypatch, exc):
    p = tmp_path / "out.png"
    p.write_bytes(b"old")

    def boom(*_a, **_k):
        raise exc("disk on fire")

    monkeypatch.setattr(images.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt if exc is KeyboardInterrupt else ReconError):
        save_image(torch.rand(1, 3, 4, 4), p)
    assert os.listdir(tmp_path) == ["out.png"] and p.read_bytes() == b"old"


def test_atomic_write_bad_data_leaves_no_temp(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "t.txt", "not bytes")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_atomic_write_missing_folder(tmp_path):
    with pytest.raises(ReconError, match=r"cannot write '.*nowhere.*x\.txt'"):
        atomic_write_text(tmp_path / "nowhere" / "x.txt", "hi")


# ---------------------------------------------------------------------------------------------
# grids and the shipped example


def test_make_grid_shapes():
    g = make_grid(torch.rand(6, 3, 8, 8), nrow=3, pad=2)
    assert g.shape == (1, 3, 2 * 8 + 3 * 2, 3 * 8 + 4 * 2)
    grey = make_grid([torch.rand(1, 1, 8, 8), torch.rand(1, 8, 8)], nrow=2)
    assert grey.shape == (1, 1, 12, 22)
    assert (grey[..., :2, :] == 1).all()  # white separators


def test_make_grid_mixed_channels_and_sizes():
    truth, low = torch.rand(1, 3, 16, 16), torch.rand(1, 1, 4, 4)
    g = make_grid([truth, low, truth], nrow=3, pad=0)
    assert g.shape == (1, 3, 16, 48)
    assert torch.equal(g[..., :16], truth)
    assert torch.equal(g[0, 0, :4, 16:20], low[0, 0, :1, :1].expand(4, 4))  # nearest: blocky
    assert g.min() >= 0 and g.max() <= 1
    with pytest.raises(ImageError, match="at least one"):
        make_grid([], nrow=2)


def test_example_image():
    x = example_image()
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32
    assert torch.equal(x, load_image(REPO / "docs" / "examples" / "astronaut_face_64.png"))
    assert torch.equal(example_image(size=128), load_image(REPO / "docs" / "examples" / "astronaut_face.png"))
    assert example_image(size=32, channels=1).shape == (1, 1, 32, 32)
    assert example_image(size=(48, 40)).shape == (1, 3, 48, 40)
    with pytest.raises(UnknownName, match="unknown example image 'astronaut'"):
        example_image("astronaut")


def test_example_matches_source_photo():
    skdata = pytest.importorskip("skimage.data")
    top, bottom, left, right = 33, 203, 139, 309  # the crop box of benchmarks/make_examples.py
    crop = torch.from_numpy(skdata.astronaut()[top:bottom, left:right].copy()).permute(2, 0, 1)
    want = fit_image(crop[None].float() / 255, 128, "resize")
    assert (example_image(size=128) - want).abs().max() <= 0.5 / 255 + 1e-6
