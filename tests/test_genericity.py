"""mlctl and the runtime know model packages, not models: no line of mlctl/ or runtime/ names the
tabular example, and the runtime names nothing of MNIST (its network, input size, data or
classes). What mlctl/ still says about MNIST is names and paths of the shipped project (the
chart's name, spec/mnist.yaml, default image and project names), listed here so it cannot grow."""

from __future__ import annotations

import re

from tests.helpers import REPO

TABULAR = re.compile(r"tabular|pumps?\b|overheat|vibration", re.I)
MNIST_DETAIL = re.compile(r"mnist|\bdigits?\b|28 ?[×x] ?28|\b784\b|idx[13]|MnistModel|model\.train\b", re.I)
# The shipped project's names, which are not details of the model: the chart (charts/mnist-seldon,
# fixed by the project's shape), the example spec's path, default image and project names.
NAMES = re.compile(
    r"mnist-seldon|spec/mnist\.yaml|ghcr\.io/(example|acme)/mnist-\w+|\"mnist\"|pvc://mlctl-models/mnist|"
    r"\(`mnist`\)|hex digits|letters, digits|or digit|\"mlctl\.mnist/v1\""
)


def _lines(folder: str):
    for path in sorted((REPO / folder).rglob("*")):
        if (
            path.is_file()
            and "__pycache__" not in path.parts
            and path.suffix in (".py", "")
            or path.name.endswith("Dockerfile")
        ):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                yield f"{path.relative_to(REPO)}:{n}", line


def test_no_line_of_mlctl_or_the_runtime_names_the_tabular_example():
    found = [f"{where}: {line.strip()}" for folder in ("mlctl", "runtime") for where, line in _lines(folder)]
    assert not [f for f in found if TABULAR.search(f.split(": ", 1)[1])]


def test_the_runtime_names_nothing_of_mnist():
    hits = [f"{w}: {line.strip()}" for w, line in _lines("runtime") if MNIST_DETAIL.search(NAMES.sub("", line))]
    assert not hits, "\n".join(hits)


def test_mlctl_names_no_mnist_detail_beyond_the_shipped_projects_names():
    hits = [f"{w}: {line.strip()}" for w, line in _lines("mlctl") if MNIST_DETAIL.search(NAMES.sub("", line))]
    assert not hits, "\n".join(hits)
