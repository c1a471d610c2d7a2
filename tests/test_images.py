"""The images mlctl builds: what goes into each, and the tag that content gives them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlctl import images
from mlctl.errors import MlctlError
from mlctl.specload import load_spec
from tests.helpers import REPO, SPEC_HEAD


@pytest.mark.parametrize(
    "image, repo, tag",
    [
        ("ghcr.io/acme/mnist:1.2", "ghcr.io/acme/mnist", "1.2"),
        ("localhost:5000/mnist:dev", "localhost:5000/mnist", "dev"),
        ("localhost:5000/team/mnist", "localhost:5000/team/mnist", ""),
        ("mnist", "mnist", ""),
    ],
)
def test_split(image, repo, tag):
    assert images.split(image) == (repo, tag)


def test_copy_sources_reads_every_form():
    text = (
        "FROM python:3.11-slim AS base\n"
        "# COPY commented/out /nowhere\n"
        "COPY requirements/a.txt requirements/b.txt /tmp/\n"
        "COPY --chown=8888:0 model/ /app/model/\n"
        'COPY ["files/x y.txt", "/x"]\n'
        "COPY --from=base /usr/local /usr/local\n"
        "RUN echo COPY not/a/source \\\n"
        "    && true\n"
        "ADD \\\n  extra.tar /opt/\n"
    )
    assert images.copy_sources(text) == [
        "requirements/a.txt",
        "requirements/b.txt",
        "model",
        "files/x y.txt",
        "extra.tar",
    ]


def test_copy_from_a_url_is_refused():
    with pytest.raises(MlctlError, match="local files only"):
        images.copy_sources("ADD https://example.com/x.tgz /x\n")


@pytest.mark.parametrize("recipe", images.RECIPES, ids=lambda r: r.dockerfile)
def test_the_shipped_dockerfiles_take_requirements_and_the_model_package(recipe):
    files = images.context_files(recipe, package=REPO / "model")
    assert recipe.dockerfile in files
    assert "requirements/constraints.txt" in files and recipe.requirements in files
    assert {"package/net.py", "package/model.yaml", "package/requirements.txt", "runtime/served.py"} <= set(files)
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert not [f for f in files if f.startswith(("mlctl/", "tests/", ".venv"))]


def _copy_project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    for rel in ("model", "requirements", "runtime"):
        shutil.copytree(REPO / rel, root / rel, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_content_tag_follows_model_code_not_stray_files(tmp_path: Path):
    root = _copy_project(tmp_path)
    serving = images.SERVING["seldon"]
    package = root / "model"
    before = images.content_digest(serving, root, package)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "net.cpython-311.pyc").write_bytes(b"stray")
    (package / "notes.pyc").write_bytes(b"stray")
    (root / "README.md").write_text("not copied by the Dockerfile")
    assert images.content_digest(serving, root, package) == before
    (package / "inference.py").write_text((package / "inference.py").read_text() + "\n# changed\n")
    changed = images.content_digest(serving, root, package)
    assert changed != before
    (root / "runtime" / "served.py").write_text((root / "runtime" / "served.py").read_text() + "\n# changed\n")
    assert images.content_digest(serving, root, package) != changed, "the runtime is part of the image"
    renamed = root / "other"
    package.rename(renamed)
    assert images.content_digest(serving, root, renamed) != changed, "the package's import name is too"


def test_a_package_without_requirements_is_named_with_the_fix(tmp_path: Path):
    root = _copy_project(tmp_path)
    (root / "model" / "requirements.txt").unlink()
    with pytest.raises(MlctlError, match=r"the model package has no requirements.txt") as e:
        images.context_files(images.TRAINING, root, root / "model")
    assert "requirements.txt" in (e.value.hint or "")


def test_stage_holds_exactly_the_context(tmp_path: Path):
    root = _copy_project(tmp_path)
    recipe = images.TRAINING
    dockerfile = images.stage(recipe, tmp_path / "ctx", root, root / "model")
    staged = sorted(str(p.relative_to(tmp_path / "ctx")) for p in (tmp_path / "ctx").rglob("*") if p.is_file())
    assert dockerfile == tmp_path / "ctx" / recipe.dockerfile
    assert staged == images.context_files(recipe, root, root / "model")
    assert (tmp_path / "ctx" / "package" / "net.py").read_bytes() == (root / "model" / "net.py").read_bytes()


def test_resolve_derives_tags_and_pins_pushed_digests(tmp_path: Path):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(SPEC_HEAD + "serving: {image: reg.example/team/serve:1.0}\ntraining: {output: out/models}\n")
    spec = load_spec(spec_file)
    refs = images.resolve(spec)
    assert refs["serving"].reference == "reg.example/team/serve:1.0" and not refs["serving"].derived
    training = refs["training"]
    assert training.derived and training.repository == "ghcr.io/example/mnist-train"
    assert training.tag == images.content_digest(images.TRAINING, package=spec.model)[: images.TAG_LENGTH]
    assert training.pinned == training.reference
    digest = "sha256:" + "ab" * 32
    images.record_push(spec, training.reference, digest)
    again = images.resolve(spec)["training"]
    assert again.digest == digest and again.pinned == f"{training.reference}@{digest}"
    assert images.resolve(spec)["serving"].digest == ""


def test_the_serving_image_is_the_engines(tmp_path: Path):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(SPEC_HEAD + "serving: {engine: kserve, kserve: {image: reg.example/team/ks}}\n")
    spec = load_spec(spec_file)
    assert images.recipes(spec) == (images.SERVING["kserve"], images.TRAINING)
    serving = images.resolve(spec)["serving"]
    assert serving.repository == "reg.example/team/ks"
    assert serving.tag == images.content_digest(images.SERVING["kserve"], package=spec.model)[: images.TAG_LENGTH]
    assert serving.tag != images.content_digest(images.SERVING["seldon"], package=spec.model)[: images.TAG_LENGTH]
