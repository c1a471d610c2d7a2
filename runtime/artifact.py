"""The trained artifact's format: the one module that knows it. Standard library only, so mlctl,
the trainer and the model server all read and write artifacts through it.

An artifact is a folder holding `model.pt` (a `Net` state_dict) and `metadata.json` (format
`mlctl.model/v1`, carrying the SHA-256 of `model.pt`). `read_artifact` checks both, and the
digest the caller expects when it names one (the server's MODEL_SHA256).

Writing: the writer builds the complete folder as a hidden sibling `.{OUT}.tmp-{pid}-{random}`
on the same filesystem, fsyncs both files and the folder, then:

- if OUT does not exist: rename(tmp, OUT), atomic;
- if OUT exists: renameat2(tmp, OUT, RENAME_EXCHANGE) swaps the two folders in one atomic
  step (Linux ≥ 3.15; ext4, xfs, btrfs, tmpfs, overlayfs), then the old one, now at the tmp
  path, is deleted. OUT stays a real folder (no symlink), so rclone, `kubectl cp` and a PVC
  mount see plain files.
- where RENAME_EXCHANGE is unsupported (EINVAL/ENOSYS, e.g. some network filesystems): rename OUT
  to `.{OUT}.old-…`, rename tmp to OUT, delete the old one. A kill between the two renames leaves
  no OUT (never a partial one); the previous artifact survives under the `.old-` name.

A SIGKILL at any moment therefore leaves OUT as the previous complete artifact, the new
complete artifact, or (fallback only) absent. Leftover hidden `.tmp-`/`.old-` siblings of dead
writers are removed by the next write.

Readers (training's tests and the model server alike): a swap can happen between a reader's two
opens, so `read_artifact` opens the folder once (a directory fd survives the swap), reads both
files relative to it, checks the format and model.pt against the SHA-256 in metadata.json and
retries on mismatch or a vanished file.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

METADATA = "metadata.json"
WEIGHTS = "model.pt"
FORMAT = "mlctl.model/v1"
FORMATS = (FORMAT, "mlctl.mnist/v1")
"""What this runtime reads: the format it writes, and the one artifacts had before any model
could be served (same layout)."""

# Test hook (documented in model/train.py): when set to a path, the writer creates that file
# once the temp folder is complete and fsynced, then sleeps before the swap, so a test can
# SIGKILL it at the most dangerous moment deterministically.
PAUSE_ENV = "MLCTL_TRAIN_TEST_PAUSE_BEFORE_COMMIT"

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class ArtifactError(Exception):
    """The artifact folder is missing, incomplete or inconsistent."""


def fsync_path(path: Path, directory: bool = False) -> None:
    """fsync a file, or with `directory` a folder (making a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_siblings(out: Path) -> None:
    """Delete `.OUT.tmp-PID-…`/`.OUT.old-PID-…` folders left by writers that died."""
    for p in out.parent.glob(f".{out.name}.*-*-*"):
        kind, _, rest = p.name[len(out.name) + 2 :].partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("tmp", "old") and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def check_replaceable(out: str | os.PathLike[str]) -> None:
    """Refuse an OUT that exists but is not ours: the swap deletes what OUT held.

    Replaceable: absent, an empty folder, or a folder holding only model.pt and a metadata.json
    of our format. Anything else (`--out /tmp`, a project folder) raises ArtifactError.
    """
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise ArtifactError(f"{out}: exists and is not a folder")
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return
    try:
        ours = json.loads((out / METADATA).read_text(encoding="utf-8")).get("format") in FORMATS
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours or not entries <= {METADATA, WEIGHTS}:
        raise ArtifactError(
            f"{out}: exists and is not an artifact folder (it would be replaced "
            f"as a whole); choose a new or empty folder"
        )


def write_artifact(
    out: str | os.PathLike[str], save_weights: Callable[[Path], None], metadata: dict[str, Any]
) -> dict[str, Any]:
    """Write `model.pt` (via `save_weights(path)`) and `metadata.json` into OUT atomically.

    Fills `metadata["sha256"]` with the SHA-256 of the written model.pt; returns the metadata.
    """
    out = Path(out).absolute()
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(out)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        weights = tmp / WEIGHTS
        save_weights(weights)
        fsync_path(weights)
        metadata = {**metadata, "weights": WEIGHTS, "sha256": sha256_file(weights)}
        meta_path = tmp / METADATA
        with open(meta_path, "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        fsync_path(tmp, directory=True)
        _pause_for_tests()
        _commit(tmp, out, tag)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return metadata


def _pause_for_tests() -> None:
    marker = os.environ.get(PAUSE_ENV)
    if not marker:
        return
    Path(marker).write_text(str(os.getpid()))
    # Wait to be killed; continue if the test removes the marker instead.
    while Path(marker).exists():
        time.sleep(0.05)


def _commit(tmp: Path, out: Path, tag: str) -> None:
    if not out.exists() and not out.is_symlink():
        try:
            os.rename(tmp, out)
            fsync_path(out.parent, directory=True)
            return
        except OSError as e:
            # Another writer created OUT meanwhile: fall through and swap with it.
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    if _exchange(tmp, out):
        fsync_path(out.parent, directory=True)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = out.parent / f".{out.name}.old-{tag}"
    os.rename(out, old)
    os.rename(tmp, out)
    fsync_path(out.parent, directory=True)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class DigestMismatch(ArtifactError):
    """The artifact is intact but not the one the caller expected."""


def read_metadata(out: str | os.PathLike[str]) -> dict[str, Any]:
    """metadata.json of OUT, format checked, weights not read (ArtifactError when absent or not ours)."""
    path = Path(out) / METADATA
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") not in FORMATS or not isinstance(meta.get("sha256"), str):
        raise ArtifactError(f"{path}: not {FORMAT} metadata")
    return meta


def read_artifact(
    out: str | os.PathLike[str], attempts: int = 5, expected_sha256: str | None = None
) -> tuple[bytes, dict[str, Any]]:
    """Return (model.pt bytes, metadata) from one consistent version of OUT.

    With `expected_sha256`, a consistent artifact of other weights raises DigestMismatch naming
    both digests. Use `torch.load(io.BytesIO(weights), weights_only=True)` on the bytes.
    """
    out = Path(out)
    last = ""
    for _ in range(attempts):
        try:
            dfd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            last = f"{out}: no artifact folder"
            time.sleep(0.05)
            continue
        try:
            meta = json.loads(_read_at(dfd, METADATA))
            if not isinstance(meta, dict):
                raise ArtifactError(f"{out}/{METADATA}: a JSON {type(meta).__name__}, not an object")
            if meta.get("format") not in FORMATS:
                raise ArtifactError(f"{out}/{METADATA}: format {meta.get('format')!r}, expected {FORMAT!r}")
            name = meta.get("weights", WEIGHTS)
            weights = _read_at(dfd, name)
        except FileNotFoundError as e:
            last = f"{out}: incomplete artifact ({e.filename} missing)"
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            last = f"{out}/{METADATA}: not valid JSON ({e})"
        else:
            actual = hashlib.sha256(weights).hexdigest()
            if actual == meta.get("sha256"):
                if expected_sha256 and actual != expected_sha256.lower():
                    raise DigestMismatch(
                        f"{out}: the weights' sha256 is {actual}, but {expected_sha256} was "
                        "expected (MODEL_SHA256): refusing to serve other weights"
                    )
                return weights, meta
            last = (
                f"{out}/{name}: SHA-256 does not match {METADATA} (file {actual[:12]}…, recorded "
                f"{str(meta.get('sha256'))[:12]}…): the artifact is corrupt or was replaced"
            )
        finally:
            os.close(dfd)
        time.sleep(0.05)
    raise ArtifactError(last)


def _read_at(dfd: int, name: object) -> bytes:
    if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
        raise ArtifactError(f"artifact file name {name!r} is not a plain file name")
    try:
        fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
    except FileNotFoundError as e:
        e.filename = name
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read()
