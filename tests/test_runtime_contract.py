"""The server reads model.yaml without pydantic (runtime/contract.py); mlctl validates it with
(mlctl/contract.py). Every shipped package's contract reads the same both ways."""

from __future__ import annotations

import pytest

from mlctl.specload import load_contract
from runtime.contract import read
from tests.helpers import REPO

PACKAGES = [REPO / "model", REPO / "examples" / "tabular" / "tabular", REPO / "mlctl" / "templates" / "blank"]


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_the_server_reads_what_mlctl_validated(package, tmp_path):
    if package.name == "blank":  # the template: its package name filled in, as mlctl init does
        import shutil

        shutil.copytree(package, tmp_path / "blank")
        text = (tmp_path / "blank" / "model.yaml").read_text().replace("PACKAGE", "blank")
        (tmp_path / "blank" / "model.yaml").write_text(text)
        package = tmp_path / "blank"
    validated, served = load_contract(package), read(package)
    assert served.cls == validated.model_class
    assert (served.output_name, served.labels, served.scores) == (
        validated.output.name,
        tuple(validated.output.labels),
        validated.output.scores,
    )
    assert served.max_batch == validated.max_batch
    assert len(served.inputs) == len(validated.inputs)
    for s, v in zip(served.inputs, validated.inputs, strict=True):
        assert (s.name, s.kind) == (v.name, v.kind)
        if v.kind == "image":
            assert (s.mode, s.max_bytes, s.max_pixels, s.min_decode_side) == (
                v.mode,
                v.max_bytes,
                v.max_pixels,
                v.min_decode_side,
            )
        else:
            assert (s.datatypes, s.shape) == (tuple(v.datatype), tuple(v.shape))
            assert s.value_range == (tuple(v.range) if v.range else None)
