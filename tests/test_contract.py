"""The model contract (model.yaml): the shipped one is valid, and each kind of mistake in a model
package is reported by `mlctl validate` with exit 2, the file, the line and what is wrong, without
importing the package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlctl.contract import contract_json_schema, find_class, kind_of
from mlctl.specload import load_contract
from tests.helpers import MODEL_PACKAGE, SPEC_HEAD

GOOD = """\
apiVersion: mlctl/v1
kind: Model
class: pkg.model:Classifier
inputs:
  - {name: features, kind: tensor, datatype: [FP32], shape: [-1, 4]}
output:
  labels: [setosa, versicolor, virginica]
training:
  command: [python, -m, pkg.train]
examples:
  - {input: examples/row.json, expect: setosa}
"""
CLASS = """\
class Classifier:
    def load(self, folder):
        self.folder = folder

    def predict(self, inputs):
        return inputs
"""

# (what is wrong, how model.yaml or the module changes, the file and line named, the words said)
MISTAKES = [
    ("missing method", None, CLASS.replace("predict", "forward"), "model.py:1", "has no `predict` method"),
    ("no such module", ("pkg.model:", "pkg.nowhere:"), None, "model.yaml:1", "no module pkg.nowhere"),
    ("no such class", ("model:Classifier", "model:Nope"), None, "model.py:1", "no class Nope"),
    ("class outside the package", ("pkg.model:", "other.model:"), None, "model.yaml:1", "not in this package"),
    ("syntax error in the module", None, "class Classifier(:\n", "model.py:1", "syntax error"),
    ("bad shape", ("shape: [-1, 4]", "shape: [4, 4]"), None, "model.yaml:5:62", "inputs[0].shape[0]: the first"),
    ("bad dtype", ("datatype: [FP32]", "datatype: [FP16]"), None, "model.yaml:5:47", "inputs[0].datatype[0]"),
    ("unknown kind", ("kind: tensor", "kind: table"), None, "model.yaml:5:5", "kind: 'table' is not one of"),
    ("missing example file", ("row.json", "nope.json"), None, "model.yaml:11:6", "examples[0].input: "),
    ("expected label not a label", ("expect: setosa", "expect: rose"), None, "model.yaml:11:32", "not one of output"),
    ("image example, no image input", ("row.json", "flower.png"), None, "model.yaml:11:6", "no input is of kind image"),
    ("example name unfit for a key", ("row.json", "a row.json"), None, "model.yaml:11:6", "file name is letters"),
    (
        "two examples, one name",
        ("row.json, expect: setosa}", "row.json, expect: setosa}\n  - {input: row.json, status: 400}"),
        None,
        "model.yaml:12:6",
        "two examples are named row.json",
    ),
    (
        "misspelt key",
        ("labels:", "lables:"),
        None,
        "model.yaml:7:3",
        "output.lables: unknown key; did you mean `labels`",
    ),
]


def package(root: Path, contract: str = GOOD, module: str = CLASS) -> Path:
    pkg = root / "pkg"
    (pkg / "examples").mkdir(parents=True)
    (pkg / "model.yaml").write_text(contract)
    (pkg / "model.py").write_text(module)
    (pkg / "examples" / "row.json").write_text("[5.1, 3.5, 1.4, 0.2]")
    (pkg / "examples" / "a row.json").write_text("[5.1, 3.5, 1.4, 0.2]")
    (pkg / "row.json").write_text("[5.1, 3.5, 1.4, 0.2]")
    (pkg / "examples" / "flower.png").write_bytes(b"\x89PNG")
    return pkg


def spec_for(root: Path, pkg: Path) -> Path:
    spec = root / "spec.yaml"
    spec.write_text(SPEC_HEAD.replace(str(MODEL_PACKAGE), str(pkg)))
    return spec


def test_the_shipped_contract_is_valid_and_its_class_has_both_methods():
    contract = load_contract(MODEL_PACKAGE)
    assert find_class(MODEL_PACKAGE, contract.model_class) == []
    assert [e.input.name for e in contract.labelled_examples] == ["digit-7.png", "digit-7-pixels.json"]
    assert all(contract.input_for(e.input) is not None for e in contract.examples)


def test_a_good_package_validates(tmp_path, mlctl):
    pkg = package(tmp_path)
    p = mlctl("validate", str(spec_for(tmp_path, pkg)))
    assert p.returncode == 0, p.stderr
    assert "model pkg.model:Classifier (3 classes, 1 example)" in p.stdout


@pytest.mark.parametrize(("what", "change", "module", "where", "said"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_mistake_is_exit_2_with_file_and_line(tmp_path, mlctl, what, change, module, where, said):
    contract = GOOD.replace(*change) if change else GOOD
    assert contract != GOOD or module is not None, "the case changes nothing"
    pkg = package(tmp_path, contract, module or CLASS)
    p = mlctl("validate", str(spec_for(tmp_path, pkg)))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    line = next((ln for ln in p.stderr.splitlines() if f"{pkg}/{where}" in ln), None)
    assert line is not None and said in line, p.stderr


def test_the_package_is_never_imported(tmp_path, mlctl):
    """A module that would fail on import (as one importing torch might here) still validates."""
    pkg = package(tmp_path, module="raise SystemExit('imported!')\n" + CLASS)
    p = mlctl("validate", str(spec_for(tmp_path, pkg)))
    assert p.returncode == 0 and "imported!" not in p.stdout + p.stderr, p.stderr


def test_a_spec_naming_no_package_says_which_line(tmp_path, mlctl):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_HEAD.replace(str(MODEL_PACKAGE), str(tmp_path / "gone")))
    p = mlctl("validate", str(spec))
    assert p.returncode == 2
    assert f"{spec}:2:1 model: {tmp_path / 'gone'} is not a folder" in p.stderr


def test_a_package_without_model_yaml_says_what_is_missing(tmp_path, mlctl):
    pkg = package(tmp_path)
    (pkg / "model.yaml").unlink()
    p = mlctl("validate", str(spec_for(tmp_path, pkg)))
    assert p.returncode == 2 and f"{pkg}/model.yaml: no such file" in p.stderr and "docs/model-contract.md" in p.stderr


def test_kinds_and_the_schema():
    assert (kind_of(Path("a.json")), kind_of(Path("a.png")), kind_of(Path("a"))) == ("tensor", "image", "image")
    schema = contract_json_schema()
    assert {"class", "inputs", "output", "training", "examples"} <= set(schema["required"])


def test_a_copy_of_the_shipped_package_elsewhere_is_the_same_contract(tmp_path):
    """Paths in model.yaml are the package's own: a copied package points at its own examples."""
    copy = tmp_path / "model"
    shutil.copytree(MODEL_PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    contract = load_contract(copy)
    assert all(e.input.parent == copy / "examples" for e in contract.examples)
    assert contract.model_class == load_contract(MODEL_PACKAGE).model_class
