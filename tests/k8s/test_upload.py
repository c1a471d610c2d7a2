"""upload.ensure_uploaded: SigV4 against AWS's published example, S3 against a real
S3-compatible server on 127.0.0.1 (moto, with signature checking on), PVC through stand-in kubectl."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from mlctl import upload
from mlctl.errors import MlctlError, UsageError
from mlctl.secrets import Secrets
from mlctl.spec import load_spec
from tests.k8s.conftest import local_artifact, remote_artifact, write_spec


def test_sigv4_matches_the_aws_documentation_example():
    # "Example: GET Object" from AWS's Signature Version 4 documentation for S3.
    headers = upload.sign_v4(
        "GET", "https://examplebucket.s3.amazonaws.com/test.txt", {"Range": "bytes=0-9"},
        hashlib.sha256(b"").hexdigest(), "us-east-1", "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", dt.datetime(2013, 5, 24, tzinfo=dt.timezone.utc),
    )  # fmt: skip
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_location_styles(tmp_path, monkeypatch):
    monkeypatch.delenv(upload.ENDPOINT_ENV, raising=False)
    spec = load_spec(write_spec(tmp_path, uri="s3://bucket/a/b/"))
    loc = upload.s3_location(spec)
    assert loc.url(loc.key("model.pt")) == "http://minio.minio.svc:9000/bucket/a/b/model.pt"
    monkeypatch.setenv(upload.ENDPOINT_ENV, "localhost:9000")
    loc = upload.s3_location(spec)
    assert loc.url(loc.key("model.pt")) == "https://localhost:9000/bucket/a/b/model.pt"
    aws = load_spec(write_spec(tmp_path, uri="s3://bucket/m").parent / "mnist.yaml")
    aws = aws.model_copy(update={"storage": aws.storage.model_copy(update={"rclone": {"type": "s3", "region": "eu-west-1"}})})
    monkeypatch.delenv(upload.ENDPOINT_ENV)
    loc = upload.s3_location(aws)
    assert loc.url(loc.key("model.pt")) == "https://bucket.s3.eu-west-1.amazonaws.com/m/model.pt"


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 on a free loopback port with request signing enforced after 4 setup calls."""
    pytest.importorskip("moto.server", reason="moto[server] not installed (add it to the dev extra)")
    boto3 = pytest.importorskip("boto3")
    from mlctl.kubectl import free_port

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1",
                             "-p", str(port)], env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        kw = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **kw)
        iam.create_user(UserName="mlctl")
        key = iam.create_access_key(UserName="mlctl")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="mlctl", PolicyName="s3", PolicyDocument=json.dumps(policy))
        s3 = boto3.client("s3", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], **kw)
        s3.create_bucket(Bucket="mlctl-models")
        yield endpoint, Secrets(storage_access_key_id=key["AccessKeyId"], storage_secret_access_key=key["SecretAccessKey"]), s3
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_s3_upload_is_idempotent_and_verified(s3_server, tmp_path, monkeypatch):
    endpoint, secrets, s3 = s3_server
    monkeypatch.setenv(upload.ENDPOINT_ENV, endpoint)
    spec = load_spec(write_spec(tmp_path, uri="s3://mlctl-models/runs/one"))
    artifact = local_artifact(tmp_path / "art")

    first = upload.ensure_uploaded(spec, artifact, secrets)
    assert first.uploaded == ["model.pt", "metadata.json"] and first.unchanged == []
    body = s3.get_object(Bucket="mlctl-models", Key="runs/one/model.pt")
    assert hashlib.sha256(body["Body"].read()).hexdigest() == artifact.sha256
    assert body["Metadata"] == {"sha256": artifact.sha256}

    again = upload.ensure_uploaded(spec, artifact, secrets)
    assert again.uploaded == [] and again.unchanged == ["model.pt", "metadata.json"]

    changed = local_artifact(tmp_path / "art", payload=b"other weights")
    third = upload.ensure_uploaded(spec, changed, secrets)
    assert third.uploaded == ["model.pt", "metadata.json"]


def test_s3_wrong_secret_is_refused_by_the_server(s3_server, tmp_path, monkeypatch):
    endpoint, secrets, _ = s3_server
    monkeypatch.setenv(upload.ENDPOINT_ENV, endpoint)
    spec = load_spec(write_spec(tmp_path, uri="s3://mlctl-models/runs/two"))
    bad = Secrets(storage_access_key_id=secrets.storage_access_key_id, storage_secret_access_key="not-the-key")
    with pytest.raises(MlctlError, match=r"HEAD s3://mlctl-models/runs/two/model.pt answered HTTP 403") as err:
        upload.ensure_uploaded(spec, local_artifact(tmp_path / "art"), bad)
    assert "not-the-key" not in str(err.value)


def test_s3_unreachable_endpoint_names_it_and_the_override(tmp_path, monkeypatch):
    from mlctl.kubectl import free_port

    monkeypatch.setenv(upload.ENDPOINT_ENV, f"http://127.0.0.1:{free_port()}")
    spec = load_spec(write_spec(tmp_path))
    with pytest.raises(MlctlError, match="cannot reach the S3 endpoint http://127.0.0.1:") as err:
        upload.ensure_uploaded(spec, local_artifact(tmp_path / "art"), Secrets(storage_access_key_id="a", storage_secret_access_key="b"))
    assert upload.ENDPOINT_ENV in err.value.hint


def test_s3_without_credentials(tmp_path, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var, raising=False)
    spec = load_spec(write_spec(tmp_path))
    with pytest.raises(UsageError, match="no S3 credentials"):
        upload.ensure_uploaded(spec, local_artifact(tmp_path / "art"), Secrets())


def test_unsupported_scheme_and_cluster_trained_artifacts(tmp_path):
    gs = load_spec(write_spec(tmp_path, uri="gs://bucket/mnist"))
    with pytest.raises(UsageError, match=r"cannot upload to gs:// \(it uploads to s3://, pvc://\)"):
        upload.ensure_uploaded(gs, local_artifact(tmp_path / "art"), Secrets())
    # Trained in the cluster: the Job already wrote it, whatever the scheme.
    done = upload.ensure_uploaded(gs, remote_artifact("gs://bucket/mnist"), Secrets())
    assert done.uploaded == [] and done.note.startswith("trained in the cluster")
    with pytest.raises(UsageError, match="lives at s3://elsewhere"):
        upload.ensure_uploaded(gs, remote_artifact("s3://elsewhere/x"), Secrets())


def test_pvc_upload_copies_what_differs_through_a_helper_pod(fakes, tmp_path):
    spec = load_spec(write_spec(tmp_path, uri="pvc://models/mnist"))
    artifact = local_artifact(tmp_path / "art")
    meta_sha = hashlib.sha256((artifact.path / "metadata.json").read_bytes()).hexdigest()
    pod = "mnist-mlctl-upload"
    fakes.on("kubectl", ["apply"], {"stdout": f"pod/{pod} created\n"})
    fakes.on("kubectl", ["wait"], {"stdout": f"pod/{pod} condition met\n"})
    fakes.on("kubectl", ["exec", "sha256sum", "/store/mnist/model.pt"],
             {"rc": 1, "stderr": "sha256sum: /store/mnist/model.pt: No such file or directory\n"},
             {"stdout": f"{artifact.sha256}  /store/mnist/model.pt\n"})  # fmt: skip
    fakes.on("kubectl", ["exec", "sha256sum", "/store/mnist/metadata.json"],
             {"stdout": f"{meta_sha}  /store/mnist/metadata.json\n"})  # fmt: skip
    fakes.on("kubectl", ["exec", "mkdir"], {"stdout": ""})
    fakes.on("kubectl", ["cp"], {"stdout": ""})
    fakes.on("kubectl", ["delete"], {"stdout": f"pod \"{pod}\" deleted\n"})

    result = upload.ensure_uploaded(spec, artifact, Secrets())
    assert result.uploaded == ["model.pt"] and result.unchanged == ["metadata.json"]
    calls = [c["argv"] for c in fakes.calls("kubectl")]
    assert [a[0] for a in calls] == ["apply", "wait", "exec", "exec", "cp", "exec", "exec", "delete"]
    for argv in (a for a in calls if a[0] == "exec"):  # kubectl's flags before `--`, not passed to the command
        assert argv.index("--namespace") < argv.index("--")
    assert calls[4][:3] == ["cp", str(artifact.weights), f"{pod}:/store/mnist/model.pt"]
    assert fakes.calls("kubectl")[0]["files"] and list(fakes.calls("kubectl")[0]["files"].values())[0]["kinds"] == ["Pod"]
    assert calls[-1][:2] == ["delete", "pod"]


def test_pvc_helper_pod_is_valid_and_deleted_on_failure(fakes, tmp_path):
    from tests.chart.helpers import validate_object

    validate_object(upload._helper_pod("mnist-mlctl-upload", "models", "mnist"))
    spec = load_spec(write_spec(tmp_path, uri="pvc://models/mnist"))
    fakes.on("kubectl", ["apply"], {"stdout": "created\n"})
    fakes.on("kubectl", ["wait"], {"rc": 1, "stderr": "error: timed out waiting for the condition on pods/mnist-mlctl-upload\n"})
    fakes.on("kubectl", ["delete"], {"stdout": "deleted\n"})
    with pytest.raises(MlctlError, match="timed out waiting"):
        upload.ensure_uploaded(spec, local_artifact(tmp_path / "art"), Secrets())
    assert fakes.verbs("kubectl") == ["apply", "wait", "delete"]
