"""Load, validate, fit and save images; atomic file writes.

Every tensor here is float32, NCHW, values in [0, 1] (see DESIGN.md, "Image tensors").
Width x height is written WxH in messages, as image viewers do; sizes passed in are (H, W).
"""

from __future__ import annotations

import io
import operator
import os
import re
import struct
import tempfile
import threading
import warnings
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, ImageOps

from .errors import BadInput, ImageError, ReconError, UnknownName, is_int

DEFAULT_MAX_PIXELS = 64_000_000  # 64 Mpx: an 8000x8000 photo; a 1024x1024 prior never needs more
FIT_MODES = ("crop-resize", "crop", "resize", "pad")
EXAMPLES = ("astronaut-face",)

# EPS is decoded by running Ghostscript on the file: never hand untrusted bytes to a subprocess.
_UNSAFE_FORMATS = frozenset({"EPS"})
# PIL's limits are module globals; we swap them per call, so calls must not interleave.
_PIL_LOCK = threading.Lock()
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Size = Union[int, Tuple[int, int]]


# ----------------------------------------------------------------------------------------------
# loading


def load_image(path, channels: Optional[int] = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Read an image file -> (1, C, H, W) float32 in [0, 1].

    Anything PIL reads (by content, whatever the extension), except EPS. Grey modes give C=1,
    colour modes C=3. Alpha is dropped, not composited: the colour channels are kept as stored.
    16-bit data (PIL modes I;16*, and I as PIL uses it for 16-bit PNG/TIFF) is scaled by
    1/65535; float data (F) must lie in [0, 1] or [0, 255]. Multi-frame files give their first
    frame; EXIF orientation is applied. ``channels`` (1 or 3) converts: grey -> RGB repeats,
    RGB -> grey uses ITU-R 601 luma (PIL's 'L' weights). Files over ``max_pixels`` are refused
    from their header, before decoding. Every failure is an ImageError naming the file.
    """
    if channels not in (None, 1, 3):
        raise ImageError(f"channels must be 1 or 3, got {channels!r}")
    if not is_int(max_pixels) or max_pixels <= 0:
        raise ImageError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    path = Path(path)

    def fail(reason: str) -> ImageError:
        return ImageError(f"cannot load image '{path}': {reason}")

    # file-system problems first, with their own messages: they are the common mistakes
    if not path.exists():
        raise fail("no such file")
    if path.is_dir():
        raise fail("it is a directory")
    if not path.is_file():
        raise fail("not a regular file")  # FIFOs and devices would block or never end
    try:
        f = open(path, "rb")
    except OSError as e:
        raise fail(e.strerror or str(e)) from None
    with f:
        # PIL reads from the open file only what it needs: a huge non-image is never slurped
        try:
            head = f.read(32)
            f.seek(0)
        except OSError as e:
            raise fail(e.strerror or str(e)) from None
        if not head:
            raise fail("the file is empty (0 bytes)")
        w_h = _png_header_size(head)
        if w_h is not None and (w_h[0] == 0 or w_h[1] == 0):
            # PIL refuses zero-size PNGs with a vague "cannot identify"; say what is wrong
            raise fail(f"the PNG header gives a size of {w_h[0]}x{w_h[1]}")
        try:
            arr = _decode(f, max_pixels, fail)
        except ImageError:
            raise
        except MemoryError:
            raise fail("not enough memory to decode it") from None
        except Exception as e:  # noqa: BLE001 - PIL raises many types on bad bytes; none may escape
            raise fail(_describe(e)) from None

    x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()
    return convert_channels(x, channels) if channels is not None else x


def _png_header_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG's IHDR chunk, or None if ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _describe(e: BaseException) -> str:
    if isinstance(e, Image.UnidentifiedImageError):
        return "not an image file, or a format PIL cannot read"
    msg = _one_line(e)
    if len(msg) > 160:  # some PIL messages quote raw file bytes
        msg = msg[:157] + "..."
    if isinstance(e, (OSError, SyntaxError, EOFError, struct.error)):
        return f"the file is truncated or corrupt ({msg or type(e).__name__})"
    return f"the file is corrupt ({type(e).__name__}: {msg})" if msg else f"the file is corrupt ({type(e).__name__})"


def _decode(fp, max_pixels: int, fail) -> np.ndarray:
    """Decode the open file ``fp`` -> (H, W, C) float32 in [0, 1], under PIL limits set for this call."""
    Image.init()  # fills Image.OPEN so the format allow-list below is complete
    formats = [f for f in Image.OPEN if f not in _UNSAFE_FORMATS]
    with _PIL_LOCK, warnings.catch_warnings():
        old_max, old_trunc = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        # PIL warns above MAX_IMAGE_PIXELS and raises above twice that; we make both errors
        Image.MAX_IMAGE_PIXELS = max_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # otherwise a cut file loads with grey rows
        # PIL's UserWarnings are about broken metadata (EXIF); the pixels load or we raise
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            try:
                im = Image.open(fp, formats=formats)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                # PIL checks the header's size at open, before decoding
                n = re.search(r"\((\d+) pixels\)", str(e))
                count = f"{int(n.group(1))} pixels" if n else "too many pixels"
                raise fail(f"the image has {count}, more than the limit of {max_pixels}") from None
            with im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    raise fail(f"the image is {w}x{h}")
                if w * h > max_pixels:
                    raise fail(f"the image is {w}x{h} = {w * h} pixels, more than the limit of {max_pixels}")
                im.seek(0)  # multi-frame (GIF, APNG, TIFF): the first frame
                im.load()  # PIL decodes lazily: force it here so truncation shows now
                im = _exif_transpose(im)
                return _to_array(im, fail)
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_max, old_trunc


def _exif_transpose(im: Image.Image) -> Image.Image:
    # phone photos store rotation in EXIF; show the image as viewers do. A broken EXIF block
    # must not make a readable image fail, so fall back to the stored orientation.
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001
        return im


_GREY_8 = {"1", "L", "LA", "La"}
_GREY_16 = {"I;16", "I;16L", "I;16B", "I;16N", "I;16S"}


def _to_array(im: Image.Image, fail) -> np.ndarray:
    """PIL image -> (H, W, C) float32 in [0, 1], C = 1 for grey modes, 3 otherwise."""
    mode = im.mode
    if mode in _GREY_8:
        a = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    elif mode in _GREY_16:
        a = np.asarray(im).astype(np.float32) / 65535.0
    elif mode == "I":
        # 32-bit signed: PIL's mode for 16-bit PNG/TIFF data in older releases and some plugins
        a = np.asarray(im).astype(np.float64)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0 or hi > 65535:
            raise fail(f"32-bit integer pixels range over [{lo:g}, {hi:g}], not 16-bit data; convert it to 8 or 16 bit")
        a = (a / 65535.0).astype(np.float32)
    elif mode == "F":
        a = np.asarray(im, dtype=np.float32)
        if not np.isfinite(a).all():
            raise fail("float pixels include NaN or infinity")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0 or hi > 255:
            raise fail(f"float pixels range over [{lo:g}, {hi:g}]; expected [0, 1] or [0, 255]")
        a = a if hi <= 1 else a / 255.0
    else:
        # RGB, RGBA/RGBX/RGBa (alpha dropped), P/PA (palette), CMYK, YCbCr, LAB, HSV, ...
        try:
            rgb = im.convert("RGB")
        except ValueError as e:
            raise fail(f"image mode {mode} cannot be converted to RGB ({e})") from None
        a = np.asarray(rgb, dtype=np.float32) / 255.0
    if a.ndim == 2:
        a = a[:, :, None]
    return np.ascontiguousarray(np.clip(a, 0.0, 1.0), dtype=np.float32)


def convert_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, 1|3, H, W) -> (N, channels, H, W): grey -> RGB repeats; RGB -> grey by ITU-R 601 luma."""
    c = x.shape[-3]
    if channels == c:
        return x
    if c == 1 and channels == 3:
        return x.repeat_interleave(3, dim=-3)
    if c == 3 and channels == 1:
        # the weights PIL's convert("L") uses (0.299, 0.587, 0.114), in float: no rounding step
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(3, 1, 1)
        return (x * w).sum(dim=-3, keepdim=True).clamp(0.0, 1.0)
    raise ImageError(f"cannot convert an image with {c} channels to {channels}; expected 1 or 3")


# ----------------------------------------------------------------------------------------------
# fitting to a prior's resolution


def _target(size: Size) -> Tuple[int, int]:
    try:
        th = tw = operator.index(size)  # any integer type, numpy's included
    except TypeError:
        try:
            th, tw = (operator.index(s) for s in size)
        except (TypeError, ValueError):
            raise ImageError(f"size must be an int or (height, width), got {size!r}") from None
    if th <= 0 or tw <= 0:
        raise ImageError(f"size must be positive, got {th}x{tw} (height x width)")
    return th, tw


def _resize(x: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == hw:
        return x.clone()
    # antialias: without it, downsampling a photo aliases (moire on hair and fabric)
    y = F.interpolate(x, size=hw, mode="bicubic", antialias=True, align_corners=False)
    return y.clamp(0.0, 1.0)  # bicubic overshoots at edges


def _centre_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
    return x[..., top:top + h, left:left + w]


def fit_image(x: torch.Tensor, size: Size, mode: str = "crop-resize") -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> (N, C, th, tw) for ``size`` = s (square) or (th, tw).

    - "crop-resize": centre crop to the target's aspect ratio, then resize (default).
    - "crop": centre crop to exactly th x tw; an image smaller than that is an error.
    - "resize": resize the whole image, ignoring the aspect ratio.
    - "pad": pad to the target's aspect ratio by repeating the edge pixels, then resize.
    Resizing is antialiased bicubic, clamped to [0, 1].
    """
    if mode not in FIT_MODES:
        raise UnknownName("fit mode", str(mode), FIT_MODES)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ImageError(f"fit_image expects an (N, C, H, W) tensor, got shape {tuple(getattr(x, 'shape', ()))}")
    th, tw = _target(size)
    h, w = x.shape[-2:]
    if h == 0 or w == 0:
        raise ImageError(f"image is {w}x{h}, which has no pixels")
    x = x.float()

    if mode == "crop":
        if h < th or w < tw:
            raise ImageError(f"image is {w}x{h}, smaller than the prior's {tw}x{th}; use --fit resize or pad")
        return _centre_crop(x, th, tw).clone()
    if mode == "resize":
        return _resize(x, (th, tw))
    if mode == "crop-resize":
        # largest centred window with the target's aspect ratio
        if h * tw > w * th:  # taller than the target
            ch, cw = max(1, round(w * th / tw)), w
        else:
            ch, cw = h, max(1, round(h * tw / th))
        return _resize(_centre_crop(x, ch, cw), (th, tw))
    # pad: smallest frame with the target's aspect ratio that holds the image. Edge replication
    # rather than zeros: no hard border for the prior to reproduce; and unlike reflection it
    # works for any pad width.
    if h * tw > w * th:
        ph, pw = h, max(w, round(h * tw / th))
    else:
        ph, pw = max(h, round(w * th / tw)), w
    top, left = (ph - h) // 2, (pw - w) // 2
    padded = F.pad(x, (left, pw - w - left, top, ph - h - top), mode="replicate")
    return _resize(padded, (th, tw))


# ----------------------------------------------------------------------------------------------
# saving


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) in [0, 1] -> numpy uint8 (H, W, C): clamped, rounded; NaN -> 0."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ImageError(f"expected one image, got a batch of {x.shape[0]}; use make_grid")
        x = x[0]
    if x.ndim != 3:
        raise ImageError(f"expected a (1, C, H, W) or (C, H, W) tensor, got shape {tuple(x.shape)}")
    x = torch.nan_to_num(x.detach().float().cpu(), nan=0.0)
    x = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return x.permute(1, 2, 0).numpy()


def save_image(x: torch.Tensor, path) -> Path:
    """Write (1, C, H, W) or (C, H, W) in [0, 1], C in {1, 3, 4}, as 8-bit PNG, atomically.

    ``path`` must end in .png; the file appears complete or not at all."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ImageError(f"cannot save '{path}': save_image writes PNG; use a .png file name")
    a = to_uint8(x)
    modes = {1: "L", 3: "RGB", 4: "RGBA"}
    if a.shape[2] not in modes:
        raise ImageError(f"cannot save '{path}': {a.shape[2]} channels; expected 1, 3 or 4")
    im = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# read once at import: os.umask can only be read by setting it, which is not thread-safe later
_UMASK = _current_umask()


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same directory + fsync + os.replace.

    Readers see the old file or the complete new one, never a partial one. The temp file is
    removed on any failure, KeyboardInterrupt included. OS errors become ReconError."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise ReconError(f"cannot write '{path}': {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp creates 0600; give the file the permissions open() would have
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o666 & ~_UMASK)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise ReconError(f"cannot write '{path}': {e.strerror or e}") from None
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(d: Path) -> None:
    # makes the rename itself durable on POSIX; not possible (nor needed) on Windows
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """``atomic_write_bytes`` for text, encoded as given; newlines are written as they are."""
    return atomic_write_bytes(path, text.encode(encoding))


# ----------------------------------------------------------------------------------------------
# grids and examples


def make_grid(images, nrow: int, pad: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile images -> (1, C, H', W') in [0, 1], ``nrow`` images per row (torchvision's layout).

    ``images``: an (N, C, H, W) tensor or a sequence of (1, C, H, W) / (C, H, W) tensors.
    Grey images become RGB when any image is RGB. Smaller images are scaled up to the largest
    size with nearest neighbour, so low-resolution measurements show their pixels."""
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images.unsqueeze(0)
        parts = [images]
    else:
        parts = [im.unsqueeze(0) if im.ndim == 3 else im for im in images]
    if not parts or any(p.ndim != 4 for p in parts) or sum(p.shape[0] for p in parts) == 0:
        raise ImageError("make_grid needs at least one (C, H, W) or (N, C, H, W) image")
    c = max(p.shape[1] for p in parts)
    h = max(p.shape[2] for p in parts)
    w = max(p.shape[3] for p in parts)
    fixed = []
    for p in parts:
        p = convert_channels(p.detach().float().cpu(), c)
        if p.shape[-2:] != (h, w):
            p = F.interpolate(p, size=(h, w), mode="nearest-exact")
        fixed.append(p)
    batch = torch.cat(fixed).clamp(0.0, 1.0)
    # torchvision.utils.make_grid's layout, written out: importing torchvision costs seconds
    n = batch.shape[0]
    cols = min(nrow, n)
    rows = -(-n // cols)
    grid = torch.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), float(pad_value))
    for k in range(n):
        y0, x0 = (k // cols) * (h + pad) + pad, (k % cols) * (w + pad) + pad
        grid[:, y0 : y0 + h, x0 : x0 + w] = batch[k]
    return grid.unsqueeze(0)


def caption_grid(grid: torch.Tensor, captions: Sequence[Sequence[str]], cols: int) -> torch.Tensor:
    """A one-row ``grid`` (1, C, H, W) of ``cols`` equal panels (as from make_grid, pad 2) with a
    white strip below, each panel's caption lines (e.g. a name and its scores) centred under it,
    in black (Pillow's built-in font; no font files needed). Returns (1, 3, H + strip, W)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    line_h = 12
    strip = 4 + line_h * max((len(c) for c in captions), default=1)
    rgb = convert_channels(grid.detach().float().cpu(), 3)[0]
    H, W = rgb.shape[1:]
    canvas = np.full((H + strip, W, 3), 255, dtype=np.uint8)
    canvas[:H] = (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    panel = (W - 2) / max(cols, 1)
    for k, lines in enumerate(captions):
        for j, text in enumerate(lines):
            tw = draw.textlength(text, font=font)
            draw.text((2 + k * panel + max(0.0, (panel - tw) / 2), H + 2 + j * line_h), text, fill=(0, 0, 0), font=font)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)


def example_image(name: str = "astronaut-face", size: Size = 64, channels: Optional[int] = None) -> torch.Tensor:
    """A shipped example photo -> (1, C, th, tw) float32 in [0, 1].

    "astronaut-face": Eileen Collins' NASA portrait (public domain; scikit-image's
    ``data.astronaut()``) cropped to rows 33..203, cols 139..309 (170x170, eyes at 40% height).
    Shipped at 128 and 64 px (benchmarks/make_examples.py regenerates them); other sizes are
    resized from the 128 px file (upsampled, so blurrier, above 128)."""
    if name not in EXAMPLES:
        raise UnknownName("example image", name, EXAMPLES)
    th, tw = _target(size)
    stem = "astronaut_face_64" if (th, tw) == (64, 64) else "astronaut_face"
    ref = resources.files("recon_core").joinpath("data", f"{stem}.png")
    with resources.as_file(ref) as p:
        x = load_image(p, channels=channels)
    return x if tuple(x.shape[-2:]) == (th, tw) else fit_image(x, (th, tw), "crop-resize")


def as_image_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` as a batch of images: a (C, H, W) tensor gains a leading axis, (N, C, H, W) passes;
    anything else is BadInput naming ``name`` (metrics and the LPIPS network check with it)."""
    if not isinstance(x, torch.Tensor):
        raise BadInput(f"{name} must be a torch tensor, got {type(x).__name__}")
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise BadInput(f"{name} must be (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    return x


def image_pair(x: torch.Tensor, x_hat: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """A reference and an estimate as two batches of one shape (N, C, H, W) (see
    ``as_image_batch``); BadInput when their shapes differ."""
    x, x_hat = as_image_batch(x, "x"), as_image_batch(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise BadInput(f"x and x_hat differ in shape: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    return x, x_hat
