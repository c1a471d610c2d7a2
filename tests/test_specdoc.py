"""docs/spec-reference.md and docs/contract-reference.md are generated from the spec and contract
models; they must not drift from them."""

from mlctl.specdoc import generate
from tests.helpers import REPO


def test_spec_reference_is_current():
    current = (REPO / "docs" / "spec-reference.md").read_text()
    assert current == generate(), "regenerate: python -m mlctl.specdoc > docs/spec-reference.md"


def test_contract_reference_is_current():
    current = (REPO / "docs" / "contract-reference.md").read_text()
    assert current == generate("contract"), (
        "regenerate: python -m mlctl.specdoc --contract > docs/contract-reference.md"
    )


def test_reference_lists_every_section():
    text = generate()
    for section in ("`data`", "`training`", "`training.runner`", "`serving.autoscaling`", "`registry.password`"):
        assert f"## {section}" in text
