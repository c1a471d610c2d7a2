"""MNIST from the four standard IDX `.gz` files: checked, optionally downloaded, held in memory.

Checksums are of the *uncompressed* IDX content: the public mirrors and our offline copy gzip
the same bytes with different encoders, so the `.gz` bytes differ while the content does not.
A file that fails any check (gzip stream, magic number, dimensions, size, SHA-256) raises
`DataError` naming the file and the problem; it is never used. Downloads land in a temporary
file beside the target and are moved into place only after the same checks passed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.artifact import fsync_path

MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
SIDE = 28


@dataclass(frozen=True)
class IdxFile:
    name: str
    """Uncompressed file name; the file on disk and on the mirrors is `name + ".gz"`."""
    magic: int
    count: int
    sha256: str
    """SHA-256 of the uncompressed content (../shared/data/mnist/README.md)."""
    md5: str
    """The published MD5 of the uncompressed content, kept for cross-checking by hand."""


FILES: dict[str, IdxFile] = {
    f.name: f
    for f in (
        IdxFile(
            "train-images-idx3-ubyte",
            IMAGES_MAGIC,
            60_000,
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "6bbc9ace898e44ae57da46a324031adb",
        ),
        IdxFile(
            "train-labels-idx1-ubyte",
            LABELS_MAGIC,
            60_000,
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "a25bea736e30d166cdddb491f175f624",
        ),
        IdxFile(
            "t10k-images-idx3-ubyte",
            IMAGES_MAGIC,
            10_000,
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "2646ac647ad5339dbf082846283269ea",
        ),
        IdxFile(
            "t10k-labels-idx1-ubyte",
            LABELS_MAGIC,
            10_000,
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            "27ae3e4e09519cfbb04c329615203637",
        ),
    )
}


class DataError(Exception):
    """MNIST files are missing, corrupt or could not be downloaded. The message names the file."""


@dataclass(frozen=True)
class MnistData:
    train_x: np.ndarray
    """uint8 (60000, 28, 28)."""
    train_y: np.ndarray
    """uint8 (60000,)."""
    test_x: np.ndarray
    """uint8 (10000, 28, 28)."""
    test_y: np.ndarray
    """uint8 (10000,)."""
    sha256: dict[str, str] = field(default_factory=dict)
    """Uncompressed file name → SHA-256 of the content that was loaded."""


def parse_idx(raw: bytes, spec: IdxFile, path: Path | str) -> np.ndarray:
    """Check header, dimensions, size and checksum of uncompressed IDX bytes; return uint8 data."""
    header = 16 if spec.magic == IMAGES_MAGIC else 8
    if len(raw) < header:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    magic, count = struct.unpack(">II", raw[:8])
    if magic != spec.magic:
        raise DataError(f"{path}: wrong magic number {magic}, expected {spec.magic}")
    if count != spec.count:
        raise DataError(f"{path}: header says {count} items, expected {spec.count}")
    shape: tuple[int, ...] = (count,)
    if spec.magic == IMAGES_MAGIC:
        rows, cols = struct.unpack(">II", raw[8:16])
        if (rows, cols) != (SIDE, SIDE):
            raise DataError(f"{path}: images are {rows}×{cols}, expected {SIDE}×{SIDE}")
        shape = (count, rows, cols)
    expected_len = header + int(np.prod(shape))
    if len(raw) != expected_len:
        raise DataError(f"{path}: {len(raw)} bytes uncompressed, expected {expected_len}")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != spec.sha256:
        raise DataError(f"{path}: SHA-256 of the uncompressed content is {digest}, expected {spec.sha256}")
    # A writable copy: torch warns on (and must not alias) read-only buffers.
    data = np.frombuffer(bytearray(raw), np.uint8, offset=header).reshape(shape)
    if spec.magic == LABELS_MAGIC and int(data.max()) > 9:
        raise DataError(f"{path}: label {int(data.max())} out of range 0-9")
    return data


def read_idx_gz(path: Path, spec: IdxFile) -> np.ndarray:
    """Decompress and check one `.gz` IDX file."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{path}: truncated or corrupt gzip ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_idx(raw, spec, path)


def _fetch(url: str, dest_dir: Path, spec: IdxFile, timeout: float) -> Path:
    """Download `url` into a temp file in `dest_dir` and check it; return the temp path."""
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".part", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        read_idx_gz(Path(tmp), spec)
        return Path(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download_file(
    spec: IdxFile,
    data_dir: Path,
    mirrors: tuple[str, ...] | list[str] = MIRRORS,
    *,
    attempts: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Fetch `spec.name + ".gz"` into `data_dir`, trying each mirror per attempt.

    A network error or a file failing its checks moves on to the next mirror; after a full
    round the wait doubles. The file appears under its final name (os.replace) only once checked.
    """
    if not mirrors:
        raise DataError(f"{data_dir / (spec.name + '.gz')}: missing and no mirror to download from")
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / f"{spec.name}.gz"
    errors: list[str] = []
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{spec.name}.gz"
            try:
                tmp = _fetch(url, data_dir, spec, timeout)
            except DataError as e:
                errors.append(f"{url}: {str(e).split(': ', 1)[-1]}")
                continue
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
                continue
            os.replace(tmp, target)
            fsync_path(data_dir, directory=True)
            return target
    raise DataError(f"{target}: download failed after {attempts} attempt(s): " + "; ".join(errors[-len(mirrors) :]))


def load_mnist(
    data_dir: str | os.PathLike[str],
    *,
    download: bool = False,
    mirrors: tuple[str, ...] | list[str] = MIRRORS,
    attempts: int = 3,
    backoff: float = 1.0,
) -> MnistData:
    """Load (and, with `download`, first fetch the missing) MNIST files from `data_dir`."""
    root = Path(data_dir)
    missing = [s for s in FILES.values() if not (root / f"{s.name}.gz").is_file()]
    if missing and not download:
        names = ", ".join(f"{s.name}.gz" for s in missing)
        where = "directory does not exist" if not root.is_dir() else f"missing {names}"
        raise DataError(f"{root}: {where} (pass --download to fetch MNIST)")
    for spec in missing:
        download_file(spec, root, mirrors, attempts=attempts, backoff=backoff)
    arrays = {name: read_idx_gz(root / f"{name}.gz", spec) for name, spec in FILES.items()}
    return MnistData(
        train_x=arrays["train-images-idx3-ubyte"],
        train_y=arrays["train-labels-idx1-ubyte"],
        test_x=arrays["t10k-images-idx3-ubyte"],
        test_y=arrays["t10k-labels-idx1-ubyte"],
        # Every array passed parse_idx, so its content hashes to the table's value.
        sha256={name: spec.sha256 for name, spec in FILES.items()},
    )
