"""docs/spec-reference.md is generated from the spec models; it must not drift from them."""

from mlctl.specdoc import generate
from tests.helpers import REPO


def test_spec_reference_is_current():
    current = (REPO / "docs" / "spec-reference.md").read_text()
    assert current == generate(), "regenerate: python -m mlctl.specdoc > docs/spec-reference.md"


def test_reference_lists_every_section():
    text = generate()
    for section in ("`data`", "`training`", "`training.runner`", "`serving.autoscaling`", "`registry.password`"):
        assert f"## {section}" in text
