"""`mlctl build`: the training and serving images, tagged as the spec names them, and `--push`.

Each image is built from a staged context (mlctl/images.py: the Dockerfile and exactly what it
COPYs) and labelled with that context's digest, so an image whose label already matches is not
built again. Where pip's packages come from (`deps`):

- `host` (the default where this Python is the images' own: CPython 3.11 on x86-64 Linux): this
  machine's pip resolves the requirements once into a wheelhouse (`~/.cache/mlctl/wheelhouse/…`,
  honouring its pip configuration and the torch pin), and the image builds from it with no
  network at all: reproducible, offline, and never a CUDA torch from PyPI;
- `index`: the Dockerfile's own pip, online (PyTorch's CPU index, then PyPI).

`--push` pushes both images with the spec's registry credentials, passed to the engine as a 0600
auth file: the chart's own rendered pull Secret, so what pushes is what the cluster pulls with.
The digest the registry answers is recorded; `mlctl render` pins the images to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from mlctl import engine as engines
from mlctl import images
from mlctl.errors import MlctlError, UsageError
from mlctl.result import Result
from mlctl.spec import Spec
from mlctl.tools import PROJECT_ROOT

Deps = Literal["auto", "host", "index"]
WHEELHOUSE_MOUNT = "/wheels"
CONSTRAINTS = "requirements/constraints.txt"


@dataclass(frozen=True)
class BuiltImage(Result):
    role: str
    reference: str
    image_id: str
    content: str
    built: bool
    """False when an image with this content label was already there."""
    size_bytes: int | None = None
    digest: str = ""
    """sha256:… the registry answered (with --push)."""
    seconds: float = 0.0


@dataclass
class BuildResult(Result):
    engine: str
    deps: str
    images: list[BuiltImage] = field(default_factory=list)
    seconds: float = 0.0


def host_matches_images() -> bool:
    """Whether this Python resolves wheels that run in the images (python:3.11-slim, this arch)."""
    return sys.version_info[:2] == (3, 11) and sys.platform == "linux" and platform.machine() in ("x86_64", "aarch64")


def cache_dir() -> Path:
    """mlctl's cache, shared by every project on this machine ($XDG_CACHE_HOME/mlctl)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "mlctl"


def _wheelhouse_key(requirements: tuple[str, ...], root: Path) -> str:
    h = hashlib.sha256(f"{sys.version_info[:2]} {platform.machine()}".encode())
    for rel in (CONSTRAINTS, *requirements):
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes())
    return h.hexdigest()[:16]


def wheelhouse(
    cache: Path,
    requirements: tuple[str, ...],
    root: Path = PROJECT_ROOT,
    on_progress: Callable[[str], None] = lambda _: None,
) -> Path:
    """Every wheel these requirements files install, resolved by this machine's pip (cached by
    their content)."""
    out = cache / _wheelhouse_key(requirements, root)
    if (out / ".complete").is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for req in requirements:
        on_progress(f"resolving {req} into a wheelhouse")
        argv = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(tmp),
            "-r",
            str(root / req),
            "-c",
            str(root / CONSTRAINTS),
        ]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
        if p.returncode:
            raise MlctlError(
                f"pip could not resolve {req} for the images (exit {p.returncode}):\n"
                + "\n".join(p.stderr.strip().splitlines()[-10:]),
                hint="check this machine's pip can reach its index, or build with --deps index",
            )
    (tmp / ".complete").write_text("")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def registry_auth(spec: Spec) -> dict | None:
    """The .dockerconfigjson of the chart's rendered pull Secret; None without one."""
    if not spec.registry.creates_secret:
        return None
    from mlctl import chart
    from mlctl.secrets import Secrets, resolve

    assert spec.registry.password is not None  # the spec demands it when it creates the Secret
    secrets = Secrets(registry_password=resolve(spec.registry.password, "registry.password"))
    return json.loads(chart.chart_secret(spec, "templates/secret-registry.yaml", secrets)[".dockerconfigjson"])


def stale(spec: Spec, engine_name: str | None = None, root: Path = PROJECT_ROOT) -> dict[str, bool]:
    """{image reference: whether a build is due} (its content label differs or it is absent)."""
    engine = engines.find(engine_name)
    refs = images.resolve(spec, root)
    return {
        refs[r.role].reference: engines.image_label(engine, refs[r.role].reference, engines.CONTENT_LABEL)
        != images.content_digest(r, root, spec.model)
        for r in images.recipes(spec)
    }


def build(
    spec: Spec,
    push: bool = False,
    deps: Deps = "auto",
    roles: tuple[str, ...] = ("training", "serving"),
    on_progress: Callable[[str], None] = lambda _: None,
    root: Path = PROJECT_ROOT,
    engine_name: str | None = None,
) -> BuildResult:
    """Build (when their content changed) and optionally push the spec's images."""
    started = time.monotonic()
    engine = engines.find(engine_name)
    if deps == "auto":
        deps = "host" if host_matches_images() and engine.mounts_in_build else "index"
    if deps == "host" and not host_matches_images():
        raise UsageError(
            f"--deps host needs this Python to match the images (CPython 3.11 on Linux), not "
            f"{platform.python_implementation()} {platform.python_version()} on {sys.platform}",
            hint="use --deps index",
        )
    result = BuildResult(engine.name, deps)
    refs = images.resolve(spec, root)
    house: Path | None = None
    chosen = [r for r in images.recipes(spec) if r.role in roles]
    for recipe in chosen:
        ref = refs[recipe.role]
        content = images.content_digest(recipe, root, spec.model)
        t0 = time.monotonic()
        built = engines.image_label(engine, ref.reference, engines.CONTENT_LABEL) != content
        if built:
            build_args: dict[str, str] = {}
            volumes: list[tuple[Path, str]] = []
            if deps == "host":
                package_needs = str(spec.model / images.PACKAGE_REQUIREMENTS)
                needs = tuple(sorted({r.requirements for r in chosen})) + (package_needs,)
                house = house or wheelhouse(cache_dir() / "wheelhouse", needs, root, on_progress)
                build_args = {"PIP_INSTALL_ARGS": f"--no-index --find-links {WHEELHOUSE_MOUNT}"}
                volumes = [(house, WHEELHOUSE_MOUNT)]
            build_args = {**build_args, "PACKAGE": spec.model.name}
            on_progress(f"building {ref.reference} ({recipe.dockerfile})")
            with tempfile.TemporaryDirectory(prefix="mlctl-context-") as ctx:
                dockerfile = images.stage(recipe, Path(ctx), root, spec.model)
                try:
                    engines.build(
                        engine,
                        Path(ctx),
                        dockerfile,
                        ref.reference,
                        {engines.CONTENT_LABEL: content},
                        build_args,
                        volumes,
                        offline=deps == "host",
                    )
                except MlctlError as exc:
                    raise exc.prefixed(f"building {ref.reference} failed") from exc
        image = BuiltImage(
            recipe.role,
            ref.reference,
            engines.image_id(engine, ref.reference),
            content,
            built,
            engines.image_size(engine, ref.reference),
            seconds=round(time.monotonic() - t0, 1),
        )
        result.images.append(image)
    if push:
        auth = registry_auth(spec)
        for i, image in enumerate(result.images):
            on_progress(f"pushing {image.reference}")
            try:
                digest = engines.push(engine, image.reference, auth)
            except MlctlError as exc:
                raise MlctlError(
                    f"pushing {image.reference} failed: {exc.message}",
                    hint="check registry.server, registry.username and the password the spec names",
                ) from exc
            images.record_push(spec, image.reference, digest)
            result.images[i] = replace(image, digest=digest)
    result.seconds = round(time.monotonic() - started, 1)
    return result
