"""A Pod's fields as podman flags (mlctl/podspec.py): each securityContext field maps to its flag,
and a field the mapping does not handle is refused, never dropped."""

from __future__ import annotations

import base64
import stat

import pytest

from mlctl.podspec import (
    Cluster,
    PodmanError,
    Unsupported,
    container_env,
    mount_flags,
    prepare_volumes,
    resource_flags,
    security_flags,
)

RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def test_the_restricted_context_maps_field_by_field():
    assert security_flags(RESTRICTED_POD, RESTRICTED, "", "c") == [
        "--user",
        "10001:10001",  # runAsUser, runAsGroup (pod level)
        "--group-add",
        "10001",  # fsGroup
        "--security-opt",
        "no-new-privileges",  # allowPrivilegeEscalation: false
        "--read-only",
        "--read-only-tmpfs=false",  # readOnlyRootFilesystem, and no tmpfs of podman's own
        "--cap-drop",
        "ALL",  # capabilities.drop
    ]  # seccompProfile RuntimeDefault is podman's default profile: no flag


def test_the_container_context_wins_over_the_pods():
    flags = security_flags({"runAsUser": 1000, "runAsGroup": 1000}, {"runAsUser": 2000}, "", "c")
    assert flags[:2] == ["--user", "2000:1000"]


def test_without_a_uid_the_images_user_counts_for_run_as_non_root():
    assert security_flags({"runAsNonRoot": True}, {}, "8888", "c")[:2] == ["--user", "8888:0"]
    with pytest.raises(PodmanError, match="would run as root"):
        security_flags({"runAsNonRoot": True}, {}, "0", "c")
    with pytest.raises(PodmanError, match="would run as root"):
        security_flags({"runAsNonRoot": True}, {}, "", "c")  # no USER in the image: root
    with pytest.raises(PodmanError, match="not numeric"):
        security_flags({"runAsNonRoot": True}, {}, "seldon", "c")


@pytest.mark.parametrize(
    "pod, container, flags",
    [
        ({}, {"privileged": True}, ["--privileged"]),
        ({}, {"capabilities": {"add": ["NET_BIND_SERVICE"]}}, ["--cap-add", "NET_BIND_SERVICE"]),
        ({"seccompProfile": {"type": "Unconfined"}}, {}, ["--security-opt", "seccomp=unconfined"]),
        ({"supplementalGroups": [5, 6]}, {}, ["--group-add", "5", "--group-add", "6"]),
    ],
)
def test_other_mapped_fields(pod, container, flags):
    assert security_flags(pod, container, "1000", "c")[-len(flags) :] == flags


@pytest.mark.parametrize(
    "pod, container, field",
    [
        ({"seLinuxOptions": {"type": "spc_t"}}, {}, "seLinuxOptions"),
        ({"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}, {}, "sysctls"),
        ({"windowsOptions": {"hostProcess": True}}, {}, "windowsOptions"),
        ({}, {"appArmorProfile": {"type": "RuntimeDefault"}}, "appArmorProfile"),
        ({}, {"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}, "Localhost"),
        ({}, {"procMount": "Unmasked"}, "procMount"),
        ({}, {"capabilities": {"drop": ["ALL"], "keep": ["X"]}}, "keep"),
    ],
)
def test_a_field_the_mapping_does_not_handle_is_refused(pod, container, field):
    with pytest.raises(Unsupported, match=field):
        security_flags(pod, container, "1000", "c")


def test_resources_become_cgroup_limits_and_a_gpu_is_refused():
    assert resource_flags({"requests": {"cpu": "1"}, "limits": {"cpu": "500m", "memory": "1Gi"}}, "c") == [
        "--cpus",
        "0.5",
        "--memory",
        str(2**30),
    ]
    with pytest.raises(Unsupported, match="no GPU"):
        resource_flags({"limits": {"nvidia.com/gpu": 1}}, "c")


def _pod(volumes, fs_group=10001):
    return {
        "metadata": {"name": "p", "annotations": {"a.io/x": 'say "hi"', "seldon.io/rest-timeout": "5000"}},
        "spec": {"securityContext": {"fsGroup": fs_group}, "volumes": volumes, "containers": []},
    }


def test_volumes_are_made_as_the_kubelet_makes_them(tmp_path):
    cm = {
        "kind": "ConfigMap",
        "metadata": {"name": "cm"},
        "data": {"k.txt": "v"},
        "binaryData": {"b.bin": base64.b64encode(b"\0\1").decode()},
    }
    cluster = Cluster([cm], "ns", tmp_path / "state", seeds={"seeded": tmp_path / "seed"})
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "f").write_text("seed")
    pod = _pod(
        [
            {"name": "e", "emptyDir": {}},
            {"name": "seeded", "emptyDir": {}},
            {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "cm", "configMap": {"name": "cm"}},
            {
                "name": "info",
                "downwardAPI": {"items": [{"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]},
            },
        ]
    )
    hosts = prepare_volumes(pod, cluster, tmp_path / "pod")
    empty = hosts["e"].stat()
    assert stat.S_IMODE(empty.st_mode) == 0o2777 and empty.st_gid == 10001  # emptyDir + fsGroup
    assert (hosts["seeded"] / "f").read_text() == "seed"
    assert hosts["claim"] == tmp_path / "state" / "claims" / "data" and hosts["claim"].stat().st_gid == 10001
    assert (hosts["cm"] / "k.txt").read_text() == "v" and (hosts["cm"] / "b.bin").read_bytes() == b"\0\1"
    # The downward API's format, which the Seldon wrapper parses for seldon.io/rest-timeout.
    assert (hosts["info"] / "annotations").read_text() == 'a.io/x="say \\"hi\\""\nseldon.io/rest-timeout="5000"\n'


def test_an_unhandled_volume_kind_is_refused(tmp_path):
    with pytest.raises(Unsupported, match="hostPath"):
        prepare_volumes(_pod([{"name": "h", "hostPath": {"path": "/"}}]), Cluster([], "ns", tmp_path), tmp_path / "p")


def test_mounts_follow_read_only_and_sub_path(tmp_path):
    volumes = {"a": tmp_path / "a", "b": tmp_path / "b"}
    container = {
        "volumeMounts": [
            {"name": "a", "mountPath": "/x", "readOnly": True},
            {"name": "b", "mountPath": "/y", "subPath": "s/t"},
        ]
    }
    assert mount_flags(container, volumes, {"spec": {}}, "c") == [
        "--volume",
        f"{tmp_path / 'a'}:/x:ro",
        "--volume",
        f"{tmp_path / 'b' / 's' / 't'}:/y",
    ]
    assert (tmp_path / "b" / "s" / "t").is_dir()
    with pytest.raises(Unsupported, match="mountPropagation"):
        mount_flags(
            {"volumeMounts": [{"name": "a", "mountPath": "/x", "mountPropagation": "Bidirectional"}]},
            volumes,
            {"spec": {}},
            "c",
        )


def test_env_from_secrets_stays_apart_from_plain_env(tmp_path):
    secret = {
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": base64.b64encode(b"k3y").decode()},
    }
    cluster = Cluster([secret], "ns", tmp_path)
    container = {
        "envFrom": [{"secretRef": {"name": "s"}}],
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
    }
    env = container_env(container, _pod([]), cluster, "c")
    assert env.plain == {"HOME": "/tmp", "POD": "p"}
    assert env.secret == {"RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": "k3y"}
    with pytest.raises(PodmanError, match="Secret other is not in the rendered release"):
        container_env({"envFrom": [{"secretRef": {"name": "other"}}]}, _pod([]), cluster, "c")
