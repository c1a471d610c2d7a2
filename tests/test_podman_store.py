"""mlctl/targets/podman/store.py without podman: which store endpoints get a stand-in, and the keys it
can take. The stand-in itself, for real: tests/containers/test_store_standin.py."""

from __future__ import annotations

import pytest

from mlctl.errors import MlctlError
from mlctl.secrets import Secrets
from mlctl.specload import load_spec
from mlctl.targets.podman import store as podman_store
from tests.helpers import MODEL_PACKAGE

SPEC = """\
apiVersion: mlctl/v1
model: {model}
modelStore: {{uri: "{uri}"}}
storage:
  rclone: {{type: s3, provider: Minio, endpoint: "{endpoint}", env_auth: "false"}}
  accessKeyId: {{env: K}}
  secretAccessKey: {{env: S}}
"""


def spec_for(tmp_path, endpoint: str, uri: str = "s3://mlctl-models/mnist"):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(model=MODEL_PACKAGE, endpoint=endpoint, uri=uri))
    return load_spec(path)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://minio.minio-system.svc.cluster.local:9000", ("minio.minio-system.svc.cluster.local", 9000)),
        ("http://minio.minio.svc:9000", ("minio.minio.svc", 9000)),
        ("http://minio", ("minio", 80)),
        ("https://store.store.svc", ("store.store.svc", 443)),  # ensure() refuses it: plain HTTP only
        ("https://s3.eu-west-1.amazonaws.com", None),  # outside the cluster: the pods reach it
        ("http://10.0.0.5:9000", None),
    ],
)
def test_a_stand_in_only_for_an_endpoint_inside_the_cluster(tmp_path, endpoint, expected):
    found = podman_store.cluster_endpoint(spec_for(tmp_path, endpoint))
    assert (found and (found.host, found.port)) == (expected or None)
    if found:
        assert found.bucket == "mlctl-models" and found.container.startswith("mlctl-store-")


def test_no_stand_in_for_other_stores(tmp_path):
    assert podman_store.cluster_endpoint(spec_for(tmp_path, "http://minio:9000", uri="pvc://models/mnist")) is None
    assert podman_store.cluster_endpoint(spec_for(tmp_path, "http://minio:9000", uri="gs://b/m")) is None


def test_the_keys_travel_as_one_csv_field_and_refuse_what_rclone_would_split():
    assert podman_store._keys(Secrets(storage_access_key_id="k", storage_secret_access_key="s")) == '"k,s"'
    for key, secret in (("a,b", "s"), ("k", 'x"y')):
        with pytest.raises(MlctlError, match="comma or a double quote"):
            podman_store._keys(Secrets(storage_access_key_id=key, storage_secret_access_key=secret))


def test_the_stand_in_store_is_built_on_the_base_every_image_uses():
    """The stand-in's image adds nothing to pull: its FROM is the serving and training images'."""
    from mlctl.images import RECIPES
    from mlctl.targets.podman.store import BASE_IMAGE
    from tests.helpers import REPO

    bases = {
        line.split()[1]
        for recipe in RECIPES
        for line in (REPO / recipe.dockerfile).read_text().splitlines()
        if line.startswith("FROM ")
    }
    assert bases == {BASE_IMAGE}
