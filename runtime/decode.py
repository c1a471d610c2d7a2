"""Posted bytes or numbers → the arrays a model's `predict` takes, every bound checked first.

Kept free of torch, seldon_core and kserve: both engines' adapters decode through this module,
and bad input is refused before any model code runs. Every refusal is an `InputError` carrying
the HTTP status the server answers with (400, or 413 for too many bytes, pixels or items).

An image input (the contract's `kind: image`), in order:
1. Refuse more than `max_bytes` bytes, and anything Pillow cannot identify from its header among
   a short list of raster formats (no EPS/PDF: Pillow would run Ghostscript for those).
2. Read the header only and refuse more than `max_pixels` pixels *before* decoding (a 30 000 ×
   30 000 PNG compresses to a few hundred KB and would take GBs once decoded). Grayscale JPEGs
   (grey, YCbCr or RGB sources) are decoded by libjpeg-turbo through `simplejpeg`, which keeps
   photos fast; Pillow handles everything else and words the errors for corrupt JPEGs. With
   `min_side` (the contract's `minDecodeSide`: a model that shrinks its images anyway) a large
   JPEG is decoded at a reduced DCT scale that keeps each side at least that long.
3. Convert to the contract's mode: `L`, an (H, W) uint8 array (transparency composited on a
   background that contrasts with the opaque pixels, 16-bit images scaled down), or `RGB`, an
   (H, W, 3) uint8 array.

A tensor input (`kind: tensor`): numbers shaped as one item (the declared shape without its
batch) or as a batch of N items, any layout holding the same number of elements per item (a
[-1, 4, 4] input takes (4, 4), (16,), (N, 16), (N, 4, 4) and (N, 1, 4, 4)); N at most
the contract's maxBatch; finite; within the declared `range`; converted to a declared datatype.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from runtime.contract import Input
from runtime.settings import DEFAULT_MAX_BATCH, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

try:  # libjpeg-turbo in one C call: ~7 µs for a small JPEG where Pillow takes ~55 µs
    import simplejpeg
except ImportError:  # pragma: no cover - the serving image and both venvs install it
    simplejpeg = None

JPEG_MAGIC = b"\xff\xd8\xff"
# JPEG colour spaces libjpeg-turbo converts to grayscale itself; others (CMYK, YCCK) go to Pillow.
FAST_JPEG_COLORSPACES = ("Gray", "YCbCr", "RGB")
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")


DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
"""Open Inference Protocol tensor datatypes and their little-endian numpy types."""


class InputError(ValueError):
    """The request cannot be turned into the model's input; `status` is the HTTP answer (4xx)."""

    def __init__(self, message: str, status: int = 400, reason: str = "MICROSERVICE_BAD_DATA"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    mode: str = "L",
    min_side: int | None = None,
) -> np.ndarray:
    """Decode image bytes (PNG, JPEG, GIF, BMP, TIFF, WebP, PNM) to uint8 pixels: (H, W) for
    mode L, (H, W, 3) for RGB."""
    if not data:
        raise InputError("empty image: the binData field carried no bytes")
    if len(data) > max_bytes:
        raise InputError(
            f"image too large: {len(data)} bytes, the limit is {max_bytes}",
            status=413,
            reason="MICROSERVICE_PAYLOAD_TOO_LARGE",
        )
    if data[:3] == JPEG_MAGIC and simplejpeg is not None and mode == "L":
        gray = _decode_jpeg_fast(data, max_pixels, min_side)
        if gray is not None:
            return gray
    try:
        with warnings.catch_warnings():
            # Pillow warns (and above 2× its own limit raises) on huge images; ours is lower.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as e:
        raise _too_many_pixels_error(str(e), max_pixels) from None
    except UnidentifiedImageError:
        raise InputError(f"not an image: the {len(data)} bytes are not one of {', '.join(ALLOWED_FORMATS)}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"unreadable image header: {e}") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise InputError(f"image has no pixels ({width}×{height})")
    if width * height > max_pixels:
        raise _too_many_pixels_error(f"{width}×{height}", max_pixels)
    if img.format == "JPEG" and min_side:
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale while staying ≥ min_side on each side.
        img.draft(mode, (min_side, min_side))
    try:
        img.load()
        pixels = _to_gray(img) if mode == "L" else np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as e:
        raise _too_many_pixels_error(str(e), max_pixels) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Truncated or corrupt data surfaces here, when the pixels are actually read.
        raise InputError(f"corrupt or truncated {img.format} image: {e}") from None
    finally:
        img.close()
    return pixels


def _decode_jpeg_fast(data: bytes, max_pixels: int, min_side: int | None) -> np.ndarray | None:
    """A JPEG straight to 8-bit grayscale with libjpeg-turbo, at a reduced DCT scale for large
    images (as Pillow's draft); None sends it to the Pillow path, which also words the errors
    for corrupt data."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if width * height > max_pixels:
        raise _too_many_pixels_error(f"{width}×{height}", max_pixels)
    if colorspace not in FAST_JPEG_COLORSPACES:
        return None
    try:
        decoded = simplejpeg.decode_jpeg(
            data, colorspace="GRAY", min_height=min(height, min_side or height), min_width=min(width, min_side or width)
        )
    except ValueError:  # truncated or corrupt: strict mode refuses what libjpeg only warns about
        return None
    return decoded[..., 0]


def check_batch_size(n: int, max_batch: int) -> None:
    """A 413 for more than `max_batch` items in one request (every engine's wording)."""
    if n > max_batch:
        raise InputError(
            f"a batch of {n} items; this server takes at most {max_batch} per request (MODEL_MAX_BATCH)",
            status=413,
            reason="MICROSERVICE_PAYLOAD_TOO_LARGE",
        )


def _batch(shape: tuple[int, ...], item: tuple[int, ...]) -> int | None:
    """N for a shape holding N items of `item`'s element count (1 for a single item), else None."""
    elements = math.prod(item)
    if shape == item or shape == (elements,):
        return 1
    if len(shape) >= 2 and math.prod(shape[1:]) == elements:
        return shape[0]
    return None


def _shapes(item: tuple[int, ...]) -> str:
    """The shapes an input takes, as its errors word them."""
    dims = ", ".join(map(str, item))
    flat = math.prod(item)
    one = f"({dims})" if len(item) > 1 else f"({dims},)"
    return f"{one} for one item, or (N, {dims}) for N" + ("" if len(item) == 1 else f" (also flattened: (N, {flat}))")


def _datatype(values: np.ndarray, given: str | None, spec: Input) -> str:
    """The datatype the values go to the model as: the request's own (V2), which must be
    declared; for untyped JSON numbers, the first declared datatype of their own kind (integers
    stay integers if one holds them, fractions go to the first float type), else any that holds
    them exactly."""
    if given is not None:
        if given not in spec.datatypes:
            raise InputError(f"input `{spec.name}` takes {' or '.join(spec.datatypes)}, got {given}")
        return given
    whole = bool(np.array_equal(values, np.rint(values)))

    def holds(name: str) -> bool:
        dtype = DTYPES[name]
        if dtype.kind == "f":
            return True
        if dtype.kind == "b":
            return bool(np.isin(values, (0, 1)).all())
        info = np.iinfo(dtype)
        return whole and (values.size == 0 or (values.min() >= info.min and values.max() <= info.max))

    own = "f" if values.dtype.kind == "f" else "iu"
    for name in (*[d for d in spec.datatypes if DTYPES[d].kind in own], *spec.datatypes):
        if holds(name):
            return name
    raise InputError(f"input `{spec.name}` takes {' or '.join(spec.datatypes)}: these values fit none of them")


def to_tensor(
    features: object, spec: Input, max_batch: int = DEFAULT_MAX_BATCH, datatype: str | None = None
) -> np.ndarray:
    """Numbers → the (N, *item shape) array of a declared datatype that `predict` gets.

    `datatype` is the request's (an OIP tensor's); None for untyped JSON (Seldon's ndarray, V1
    instances)."""
    try:
        arr = np.asarray(features)
    except (ValueError, TypeError) as e:
        raise InputError(f"input `{spec.name}`: data is not a numeric array: {e}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
        raise InputError(f"input `{spec.name}`: data must be numbers, got {arr.dtype} values")
    item = spec.item_shape
    n = _batch(arr.shape, item)
    if n is None:
        raise InputError(f"input `{spec.name}`: data shaped {arr.shape}; accepted shapes are {_shapes(item)}")
    if n < 1:
        raise InputError(f"input `{spec.name}`: data shaped {arr.shape} holds no item")
    check_batch_size(n, max_batch)
    values = arr.reshape(n, *item)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise InputError(f"input `{spec.name}`: data contains NaN or infinite values")
    if spec.value_range is not None and values.size:
        lo, hi = float(values.min()), float(values.max())
        if lo < spec.value_range[0] or hi > spec.value_range[1]:
            low, high = spec.value_range
            raise InputError(f"input `{spec.name}`: values range {lo:g}..{hi:g}; it takes values in {low:g}..{high:g}")
    dtype = DTYPES[_datatype(values, datatype, spec)]
    if values.dtype == dtype:
        return np.array(values)  # a writable copy: torch warns on read-only buffers
    if dtype.kind in "iub":
        name = datatype or next(k for k, v in DTYPES.items() if v == dtype)
        if not np.array_equal(values, np.rint(values)):
            raise InputError(f"input `{spec.name}` is {name}: its values must be whole numbers")
        info = np.iinfo(dtype) if dtype.kind != "b" else None
        if info is not None and values.size and (values.min() < info.min or values.max() > info.max):
            raise InputError(f"input `{spec.name}` is {name}: its values must lie in {info.min}..{info.max}")
    return values.astype(dtype)


def _too_many_pixels_error(what: str, max_pixels: int) -> InputError:
    return InputError(
        f"image has too many pixels ({what}); the limit is {max_pixels} pixels",
        status=413,
        reason="MICROSERVICE_PAYLOAD_TOO_LARGE",
    )


def _to_gray(img: Image.Image) -> np.ndarray:
    """Any Pillow mode → a 2-D uint8 array, alpha composited on a contrasting background."""
    mode = img.mode
    if mode == "L":
        return np.asarray(img, dtype=np.uint8)
    if mode.startswith("I") or mode == "F":
        # 16-bit scans (I;16*, or I from a 16-bit PNG) scale to 8 bits; 8-bit data stored in
        # a 32-bit mode is taken as is.
        values = np.asarray(img, dtype=np.float64)
        if values.size and values.max() > 255:
            values = values / 257.0
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode == "P":
        img = img.convert("RGB")
    if img.mode in ("LA", "PA", "RGBA", "RGBa", "La"):
        la = np.asarray(img.convert("LA"), dtype=np.float32)
        lum, alpha = la[..., 0], la[..., 1] / 255.0
        opaque = alpha > 0.5
        # Dark strokes on a transparent canvas go on white, light strokes on black.
        ink = float(lum[opaque].mean()) if opaque.any() else 0.0
        background = 255.0 if ink < 128 else 0.0
        out = lum * alpha + background * (1.0 - alpha)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if img.mode not in ("RGB", "1"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, …
    return np.asarray(img.convert("L"), dtype=np.uint8)
