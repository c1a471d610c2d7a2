"""Posted bytes or arrays → the 28×28 uint8 MNIST grid that `model.preprocess.normalize` takes.

Kept free of torch and seldon_core so the training-side tests can check parity with it, and so
bad input is rejected before any tensor work. Every rejection is an `InputError` carrying the
HTTP status the server should answer with.

What the image path does, in order:
1. Refuse more than `max_bytes` bytes, and anything Pillow cannot identify from its header among
   a short list of raster formats (no EPS/PDF: Pillow would run Ghostscript for those).
2. Read the header only and refuse more than `max_pixels` pixels *before* decoding (a 30 000 ×
   30 000 PNG compresses to a few hundred KB and would take GBs once decoded). JPEGs (grey, YCbCr
   or RGB) are decoded by libjpeg-turbo through `simplejpeg` straight to grayscale, at a reduced
   DCT scale for large images, which keeps phone photos fast; Pillow, whose Python header parsing
   costs most of a small JPEG's decode, handles everything else and words the errors for corrupt
   JPEGs (the same pixels: a test compares the two decoders).
3. Convert to 8-bit grayscale. Transparency is composited on a background that contrasts with
   the opaque pixels (dark strokes on a transparent canvas land on white, light ones on black),
   so a digit drawn on a transparent canvas survives either way. 16-bit images are scaled down.
4. Inversion heuristic: MNIST digits are white on black. The median of the outermost ring of
   pixels estimates the background; if it is light (> 127) the image is inverted, so a photo or
   scan of dark ink on paper becomes light-on-dark. Real MNIST digits have a black border and are
   never inverted.
5. Pad to a square with the (now black) background, keeping the aspect ratio, and resize to 28×28.
   A 28×28 input is taken as is, so an MNIST test image round-trips to exactly its pixels.

Arrays (JSON `ndarray`/`tensor`) are taken as already-MNIST-oriented pixels: one image shaped
(28, 28) or (784,), or a batch of N shaped (N, 784), (N, 28, 28) or (N, 1, 28, 28), N at most
the server's MNIST_MAX_BATCH. A float array whose values all lie in [0, 1] is scaled by 255
(ToTensor's scale), anything else must lie in 0..255; both are rounded to uint8.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.settings import DEFAULT_MAX_BATCH, DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

try:  # libjpeg-turbo in one C call: ~7 µs for a 28×28 JPEG where Pillow takes ~55 µs
    import simplejpeg
except ImportError:  # pragma: no cover - the serving image and both venvs install it
    simplejpeg = None

SIDE = 28
JPEG_MAGIC = b"\xff\xd8\xff"
# JPEG colour spaces libjpeg-turbo converts to grayscale itself; others (CMYK, YCCK) go to Pillow.
FAST_JPEG_COLORSPACES = ("Gray", "YCbCr", "RGB")
ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")
# The array shapes taken, as the error for any other shape words them; N is the batch.
ARRAY_SHAPES = "(28, 28), (784,), (N, 784), (N, 28, 28) or (N, 1, 28, 28)"


class InputError(ValueError):
    """The request cannot be turned into an MNIST image; `status` is the HTTP answer (4xx)."""

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
) -> np.ndarray:
    """Decode image bytes (PNG, JPEG, GIF, BMP, TIFF, WebP, PNM) to a (28, 28) uint8 MNIST grid."""
    if not data:
        raise InputError("empty image: the binData field carried no bytes")
    if len(data) > max_bytes:
        raise InputError(
            f"image too large: {len(data)} bytes, the limit is {max_bytes}",
            status=413,
            reason="MICROSERVICE_PAYLOAD_TOO_LARGE",
        )
    if data[:3] == JPEG_MAGIC and simplejpeg is not None:
        gray = _decode_jpeg_fast(data, max_pixels)
        if gray is not None:
            return _to_mnist_grid(gray)
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
    if img.format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale while staying ≥ 4×28 on each side.
        img.draft("L", (SIDE * 4, SIDE * 4))
    try:
        img.load()
        gray = _to_gray(img)
    except Image.DecompressionBombError as e:
        raise _too_many_pixels_error(str(e), max_pixels) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Truncated or corrupt data surfaces here, when the pixels are actually read.
        raise InputError(f"corrupt or truncated {img.format} image: {e}") from None
    finally:
        img.close()
    return _to_mnist_grid(gray)


def _decode_jpeg_fast(data: bytes, max_pixels: int) -> np.ndarray | None:
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
            data, colorspace="GRAY", min_height=min(height, SIDE * 4), min_width=min(width, SIDE * 4)
        )
    except ValueError:  # truncated or corrupt: strict mode refuses what libjpeg only warns about
        return None
    return decoded[..., 0]


def _batch_size(shape: tuple[int, ...]) -> int | None:
    """N for an accepted array shape (1 for a single image), None for any other shape."""
    if shape in ((SIDE, SIDE), (SIDE * SIDE,)):
        return 1
    if len(shape) >= 2 and shape[1:] in ((SIDE * SIDE,), (SIDE, SIDE), (1, SIDE, SIDE)):
        return shape[0]
    return None


def check_batch_size(n: int, max_batch: int) -> None:
    """A 413 for more than `max_batch` images in one request (every engine's wording)."""
    if n > max_batch:
        raise InputError(
            f"a batch of {n} images; this server takes at most {max_batch} per request (MNIST_MAX_BATCH)",
            status=413,
            reason="MICROSERVICE_PAYLOAD_TOO_LARGE",
        )


def array_to_pixels(features: object, max_batch: int = DEFAULT_MAX_BATCH) -> np.ndarray:
    """Take a JSON ndarray/tensor payload as MNIST-oriented pixels; return (N, 28, 28) uint8
    grids, N = 1 for a single image."""
    try:
        arr = np.asarray(features)
    except (ValueError, TypeError) as e:
        raise InputError(f"data is not a numeric array: {e}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
        raise InputError(f"data must be numbers, got {arr.dtype} values")
    n = _batch_size(arr.shape)
    if n is None:
        raise InputError(f"data shaped {arr.shape}; accepted shapes are {ARRAY_SHAPES}")
    if n < 1:
        raise InputError(f"data shaped {arr.shape} holds no image")
    check_batch_size(n, max_batch)
    values = arr.astype(np.float64).reshape(n, SIDE, SIDE)
    if not np.isfinite(values).all():
        raise InputError("data contains NaN or infinite values")
    lo, hi = float(values.min()), float(values.max())
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        values = values * 255.0
    elif lo < 0.0 or hi > 255.0:
        raise InputError(f"pixel values range {lo:g}..{hi:g}; send floats in [0, 1] or numbers in 0..255")
    return np.rint(values).astype(np.uint8)


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


def _median_above_127(values: np.ndarray) -> bool:
    """`np.median(values) > 127` for uint8 values, exactly, without np.median's ~25 µs of
    Python overhead per call: the median exceeds 127 iff its two middle elements sum past 254."""
    ordered = np.sort(values, axis=None)
    n = ordered.size
    return int(ordered[(n - 1) // 2]) + int(ordered[n // 2]) > 254


def _to_mnist_grid(gray: np.ndarray) -> np.ndarray:
    """Invert light backgrounds, pad to a square keeping the aspect ratio, resize to 28×28."""
    if gray.shape[0] > 2 and gray.shape[1] > 2:
        ring = np.concatenate((gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]))
    else:
        ring = gray.ravel()
    if _median_above_127(ring):
        gray = 255 - gray
    h, w = gray.shape
    if (h, w) == (SIDE, SIDE):
        return np.array(gray, dtype=np.uint8)  # a writable copy: torch warns on read-only
    side = max(h, w)
    if h != w:
        square = np.zeros((side, side), dtype=np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = gray
        gray = square
    resized = Image.fromarray(gray).resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.array(resized, dtype=np.uint8)
