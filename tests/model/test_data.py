"""model/data.py: the real files load; every kind of corruption is a clear DataError; downloads
go through a real local HTTP server with checksum checks, retries and atomic placement."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from model.data import FILES, DataError, download_file, load_mnist, read_idx_gz

TEST_LABELS = FILES["t10k-labels-idx1-ubyte"]
TEST_IMAGES = FILES["t10k-images-idx3-ubyte"]


def raw(mnist_dir: Path, name: str) -> bytes:
    return gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())


def test_loads_the_real_files(mnist_dir):
    d = load_mnist(mnist_dir)
    assert d.train_x.shape == (60_000, 28, 28) and d.train_x.dtype == np.uint8
    assert d.test_x.shape == (10_000, 28, 28)
    assert np.bincount(d.train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(d.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert d.sha256 == {name: f.sha256 for name, f in FILES.items()}
    # The table's SHA-256 and published MD5 describe the same bytes.
    content = raw(mnist_dir, "t10k-labels-idx1-ubyte")
    assert hashlib.md5(content).hexdigest() == TEST_LABELS.md5  # noqa: S324 - comparing to the published MD5
    assert hashlib.sha256(content).hexdigest() == TEST_LABELS.sha256


def flip_byte(content: bytes) -> bytes:
    b = bytearray(content)
    b[100] ^= 0x01  # a label stays within 0-9, so only the checksum can notice
    return bytes(b)


def wrong_magic(content: bytes) -> bytes:
    return struct.pack(">I", 2051) + content[4:]


def wrong_count(content: bytes) -> bytes:
    return content[:4] + struct.pack(">I", 9_999) + content[8:]


def short_content(content: bytes) -> bytes:
    return content[:-1]


CORRUPTIONS = [
    (flip_byte, "SHA-256 of the uncompressed content"),
    (wrong_magic, "wrong magic number 2051, expected 2049"),
    (wrong_count, "header says 9999 items, expected 10000"),
    (short_content, "10007 bytes uncompressed, expected 10008"),
]


@pytest.mark.parametrize(("corrupt", "message"), CORRUPTIONS, ids=[c[0].__name__ for c in CORRUPTIONS])
def test_corrupt_content_is_a_clear_error(mnist_dir, tmp_path, corrupt, message):
    for name in FILES:  # the intact files by link, so only the corrupt one is read from tmp
        (tmp_path / f"{name}.gz").symlink_to(mnist_dir / f"{name}.gz")
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.unlink()
    bad.write_bytes(gzip.compress(corrupt(raw(mnist_dir, "t10k-labels-idx1-ubyte"))))
    with pytest.raises(DataError, match=message) as e:
        load_mnist(tmp_path)
    assert str(e.value).startswith(f"{bad}: ")


def test_truncated_gz_is_a_clear_error(mnist_dir, tmp_path):
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    whole = (mnist_dir / bad.name).read_bytes()
    bad.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=f"^{bad}: truncated or corrupt gzip"):
        read_idx_gz(bad, TEST_IMAGES)


def test_not_gzip_is_a_clear_error(tmp_path):
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match=f"^{bad}: truncated or corrupt gzip"):
        read_idx_gz(bad, TEST_LABELS)


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DataError, match=r"missing .*t10k-labels-idx1-ubyte\.gz.*--download"):
        load_mnist(tmp_path)
    with pytest.raises(DataError, match="directory does not exist"):
        load_mnist(tmp_path / "nope")


# --- downloads through a real HTTP server on 127.0.0.1 -------------------------------------------


def test_download_all_then_load(mnist_dir, tmp_path, mirror):
    for name in FILES:
        # Another gzip encoding than ours, as on the real mirrors: only the content must match.
        mirror.serve(f"{name}.gz", gzip.compress(raw(mnist_dir, name), compresslevel=1, mtime=1))
    d = load_mnist(tmp_path / "data", download=True, mirrors=[mirror.url], backoff=0)
    assert d.test_y[:5].tolist() == [7, 2, 1, 0, 4]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(f"{n}.gz" for n in FILES)
    assert all(n == 1 for n in mirror.requests.values())


def test_download_retries_after_a_server_error(mnist_dir, tmp_path, mirror):
    name = "t10k-labels-idx1-ubyte.gz"
    mirror.serve(name, (mnist_dir / name).read_bytes())
    mirror.fail_first[f"mnist/{name}"] = 1
    target = download_file(TEST_LABELS, tmp_path, [mirror.url], attempts=3, backoff=0.01)
    assert mirror.requests[f"mnist/{name}"] == 2
    assert target.read_bytes() == (mnist_dir / name).read_bytes()


def test_download_rejects_a_corrupt_file_and_leaves_nothing(mnist_dir, tmp_path, mirror):
    name = "t10k-labels-idx1-ubyte.gz"
    mirror.serve(name, gzip.compress(flip_byte(raw(mnist_dir, "t10k-labels-idx1-ubyte"))))
    with pytest.raises(DataError, match=f"^{tmp_path / name}: download failed after 2 attempt.*SHA-256"):
        download_file(TEST_LABELS, tmp_path, [mirror.url], attempts=2, backoff=0)
    assert mirror.requests[f"mnist/{name}"] == 2
    assert list(tmp_path.iterdir()) == []  # no target, no temp file


def test_download_falls_back_to_the_next_mirror(mnist_dir, tmp_path, mirror):
    name = "t10k-labels-idx1-ubyte.gz"
    mirror.serve(name, gzip.compress(wrong_magic(raw(mnist_dir, "t10k-labels-idx1-ubyte"))))
    mirror.files[f"good/{name}"] = (mnist_dir / name).read_bytes()
    good = mirror.url.replace("/mnist/", "/good/")
    download_file(TEST_LABELS, tmp_path, [mirror.url, good], attempts=1, backoff=0)
    assert read_idx_gz(tmp_path / name, TEST_LABELS)[:3].tolist() == [7, 2, 1]


def test_download_reports_unreachable_mirrors(tmp_path, mirror):
    with pytest.raises(DataError, match="download failed after 1 attempt.*Not Found"):
        download_file(TEST_LABELS, tmp_path, [mirror.url], attempts=1, backoff=0)
    assert list(tmp_path.iterdir()) == []
