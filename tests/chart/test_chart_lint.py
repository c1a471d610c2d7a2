"""`helm lint --strict` and `helm template` over the defaults and every ci/*-values.yaml variant,
with Helm 4 and Helm 3, each rendered object validated against its schema."""

from __future__ import annotations

import copy

import jsonschema
import kubernetes_validate
import pytest

from tests.chart.helpers import (
    CI_VALUES,
    TRAINING,
    HelmFailed,
    helm_binaries,
    lint,
    one,
    template,
    template_text,
    validate_all,
    validate_object,
)

# The defaults need exactly one value; a pvc:// uri needs no credentials.
DEFAULTS = {"model": {"uri": "pvc://mnist-models/mnist/v1"}}
VARIANTS = [pytest.param(None, id="defaults")] + [pytest.param(p, id=p.stem) for p in CI_VALUES]


def _args(variant):
    return {"values": DEFAULTS} if variant is None else {"values_files": [variant]}


def test_ci_variants_exist():
    names = {p.stem for p in CI_VALUES}
    assert {
        "existing-secrets-values",
        "pvc-values",
        "autoscaling-values",
        "train-gpu-values",
        "train-pvc-values",
        "kserve-values",
    } <= names


@pytest.mark.parametrize("variant", VARIANTS)
def test_lint_strict(each_helm, variant):
    out = lint(helm=each_helm, **_args(variant))
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_objects_are_valid(each_helm, seldon_schema, variant):
    objects = template(helm=each_helm, **_args(variant))
    validate_all(objects)
    served = "InferenceService" if variant is not None and variant.stem.startswith("kserve") else "SeldonDeployment"
    assert [o["kind"] for o in objects if o["kind"] in ("SeldonDeployment", "InferenceService")] == [served]


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm3_and_helm4_render_the_same(helm, variant):
    binaries = helm_binaries()
    if len(binaries) < 2:
        pytest.skip("needs both Helm 3 and Helm 4")
    assert template_text(helm=binaries["helm3"], **_args(variant)) == template_text(
        helm=binaries["helm4"], **_args(variant)
    )


def test_strict_validation_rejects_unknown_fields(helm, seldon_schema):
    """The validators must see typos, or the tests above prove nothing."""
    objects = template(values={"model": {"uri": "pvc://m/p"}, "training": TRAINING}, helm=helm)
    sdep = copy.deepcopy(one(objects, "SeldonDeployment"))
    sdep["spec"]["predictors"][0]["componentSpecs"][0]["hpaSpec"] = {"maxReplicas": 2, "metric": []}
    with pytest.raises(jsonschema.ValidationError, match="metric"):
        validate_object(sdep)
    job = copy.deepcopy(one(objects, "Job"))
    job["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(job)


@pytest.mark.parametrize("kube, ok", [("1.22.0", False), ("1.23.0", True), ("1.31.0", True)])
def test_kube_version_constraint(each_helm, kube, ok):
    args = {"values": DEFAULTS, "helm": each_helm, "extra_args": ["--kube-version", kube]}
    if ok:
        assert template(**args)
    else:
        with pytest.raises(HelmFailed, match="kubeVersion|compatible"):
            template(**args)
