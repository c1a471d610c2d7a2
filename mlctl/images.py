"""The images mlctl builds (training, and each engine's serving image), what goes into each, and
the tag that content gives them.

An image is its Dockerfile plus the files that Dockerfile's COPY instructions name, and nothing
else: `stage` copies exactly those into a fresh build context, and `content_digest` hashes
exactly that context. So a spec image without a tag (`ghcr.io/acme/mnist-seldon`) gets a tag
that changes when, and only when, the Dockerfile, a requirements file or the model code does,
and stray files (caches, virtualenvs) neither reach the image nor change its tag.

The Dockerfiles are the runtime's (runtime/*.Dockerfile), the same for every model: what they
COPY from `package/` is the spec's model package (its code, model.yaml and requirements.txt),
staged under that name, and the build argument PACKAGE gives its import name. So a user writes
no Dockerfile, and the images of two packages differ by exactly their packages.

`mlctl build --push` records the digest the registry answered (`record_push`); `resolve` then
pins the rendered image to it, so the release runs exactly the bytes that were pushed.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from mlctl.errors import MlctlError
from mlctl.spec import Spec
from mlctl.tools import PROJECT_ROOT

TAG_LENGTH = 12
IGNORED = ("__pycache__", ".pyc", ".pyo")
PACKAGE_DIR = "package"
"""Where the runtime's Dockerfiles COPY the model package from, in the staged context."""
PACKAGE_REQUIREMENTS = "requirements.txt"
"""The package's own requirements (what its code imports beyond the runtime), in its folder."""


@dataclass(frozen=True)
class Recipe:
    role: str
    """`serving` or `training`."""
    dockerfile: str
    """Path relative to the project root."""
    requirements: str
    """The requirements file its pip installs (with requirements/constraints.txt)."""


SERVING = {
    "seldon": Recipe("serving", "runtime/seldon.Dockerfile", "requirements/serve.txt"),
    "kserve": Recipe("serving", "runtime/kserve.Dockerfile", "requirements/kserve.txt"),
}
"""The serving image of each engine (spec.serving.engine)."""
TRAINING = Recipe("training", "runtime/train.Dockerfile", "requirements/train.txt")
RECIPES = (*SERVING.values(), TRAINING)
"""Every image mlctl knows how to build."""


def recipes(spec: Spec) -> tuple[Recipe, Recipe]:
    """The images a spec deploys: its engine's serving image and the training image."""
    return SERVING[spec.serving.engine], TRAINING


@dataclass(frozen=True)
class ImageRef:
    """One image as the release names it."""

    role: str
    repository: str
    tag: str
    derived: bool
    """The tag is the content digest (the spec gave none)."""
    digest: str = ""
    """sha256:… the registry answered when mlctl pushed this exact repository:tag, else empty."""

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def pinned(self) -> str:
        """The reference a pod pulls: by digest when one is known."""
        return f"{self.reference}@{self.digest}" if self.digest else self.reference


def copy_sources(dockerfile: str) -> list[str]:
    """The build-context paths a Dockerfile's COPY/ADD instructions read (not `--from` copies)."""
    sources: list[str] = []
    logical = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical, line = "", logical + line
        word, _, rest = line.partition(" ")
        if word.upper() not in ("COPY", "ADD"):
            continue
        rest = rest.strip()
        parts = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        flags = [p for p in parts if p.startswith("--")]
        paths = [p for p in parts if not p.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        for source in paths[:-1]:
            if "://" in source:
                raise MlctlError(f"{word} {source}: mlctl builds from local files only")
            sources.append(source.rstrip("/") or ".")
    return sources


def _ignored(path: Path) -> bool:
    return any(part == IGNORED[0] for part in path.parts) or path.suffix in IGNORED[1:]


def source(rel: str, root: Path, package: Path | None) -> Path:
    """Where a context path's file comes from: `package/…` from the model package, the rest
    from mlctl's own tree (the runtime, the requirements)."""
    head, _, rest = rel.partition("/")
    if head == PACKAGE_DIR and package is not None:
        return package / rest if rest else package
    return root / rel


def context_files(recipe: Recipe, root: Path = PROJECT_ROOT, package: Path | None = None) -> list[str]:
    """Every file of the staged context (context paths), sorted."""
    dockerfile = root / recipe.dockerfile
    try:
        text = dockerfile.read_text(encoding="utf-8")
    except OSError as exc:
        raise MlctlError(f"{dockerfile}: {exc.strerror}") from exc
    files = {recipe.dockerfile}
    for rel in copy_sources(text):
        path = source(rel, root, package)
        if path.is_dir():
            files |= {
                f"{rel}/{p.relative_to(path)}" if rel != "." else str(p.relative_to(path))
                for p in path.rglob("*")
                if p.is_file() and not _ignored(p.relative_to(path))
            }
        elif path.is_file():
            files.add(rel)
        elif rel.startswith(PACKAGE_DIR + "/") and package is not None:
            raise MlctlError(
                f"{package}: the model package has no {rel.partition('/')[2]} (the images install it)",
                hint=f"add {package / rel.partition('/')[2]}, listing what the model code imports (may be empty)",
            )
        else:
            raise MlctlError(f"{recipe.dockerfile}: COPY source {rel} does not exist")
    return sorted(files)


def content_digest(recipe: Recipe, root: Path = PROJECT_ROOT, package: Path | None = None) -> str:
    """sha256 over the staged context (each file's path and bytes) and the package's name."""
    h = hashlib.sha256(f"PACKAGE={package.name if package else ''}\0".encode())
    for rel in context_files(recipe, root, package):
        data = source(rel, root, package).read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def stage(recipe: Recipe, into: Path, root: Path = PROJECT_ROOT, package: Path | None = None) -> Path:
    """Copy the context into `into`; returns the Dockerfile's path there."""
    for rel in context_files(recipe, root, package):
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source(rel, root, package), target)
    return into / recipe.dockerfile


def parse(image: str) -> tuple[str, str, str]:
    """`host:5000/team/app:1.2@sha256:…` → (`host:5000/team/app`, `1.2`, `sha256:…`); the tag
    and the digest may be empty."""
    image, _, digest = image.partition("@")
    name, _, last = image.rpartition("/")
    repo, sep, tag = last.partition(":")
    return (f"{name}/{repo}" if name else repo), (tag if sep else ""), digest


def split(image: str) -> tuple[str, str]:
    """`host:5000/team/app:1.2` → (`host:5000/team/app`, `1.2`); the tag may be empty."""
    repository, tag, _ = parse(image)
    return repository, tag


def _images_file(spec: Spec) -> Path:
    return spec.training.output.parent / "images.json"


def _pushed(spec: Spec) -> dict[str, str]:
    try:
        data = json.loads(_images_file(spec).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def record_push(spec: Spec, reference: str, digest: str) -> None:
    """Remember the digest a push of `reference` (repository:tag) answered."""
    file = _images_file(spec)
    file.parent.mkdir(parents=True, exist_ok=True)
    data = {**_pushed(spec), reference: digest}
    file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def resolve(spec: Spec, root: Path = PROJECT_ROOT) -> dict[str, ImageRef]:
    """{role: ImageRef} for the spec: its tag, or the content digest's first characters."""
    named = {"serving": spec.serving.engine_image, "training": spec.training.image}
    pushed = _pushed(spec)
    out = {}
    for recipe in recipes(spec):
        repository, tag, digest = parse(named[recipe.role])
        derived = not tag
        tag = tag or content_digest(recipe, root, spec.model)[:TAG_LENGTH]
        out[recipe.role] = ImageRef(
            recipe.role, repository, tag, derived, digest or pushed.get(f"{repository}:{tag}", "")
        )
    return out
