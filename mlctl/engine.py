"""The container engine that builds and pushes images (podman, buildah or docker): the only code
that knows their build and push command lines.

Found in that order (or `MLCTL_CONTAINER_ENGINE`); an engine counts when it can run, so a docker
client without a daemon is passed over. Registry credentials reach the engine only as a 0600
auth file (`--authfile`, or a DOCKER_CONFIG folder for docker), never as arguments.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlctl import tools
from mlctl.errors import MlctlError

ENGINES = ("podman", "buildah", "docker")
ENV_ENGINE = "MLCTL_CONTAINER_ENGINE"
CONTENT_LABEL = "io.mlctl.content"


@dataclass(frozen=True)
class Engine:
    name: str
    path: str

    @property
    def mounts_in_build(self) -> bool:
        """Whether `build --volume` works (podman and buildah), which offline builds need."""
        return self.name in ("podman", "buildah")


def _works(name: str, path: str) -> bool:
    probe = {"docker": ["version", "--format", "{{.Server.Version}}"]}.get(name, ["version"])
    try:
        tools.run([path, *probe], timeout=60)
    except MlctlError:
        return False
    return True


def find(wanted: str | None = None) -> Engine:
    """The engine named (or by $MLCTL_CONTAINER_ENGINE), else the first of ENGINES that runs."""
    wanted = wanted or os.environ.get(ENV_ENGINE)
    names = [wanted] if wanted else list(ENGINES)
    tried = []
    for name in names:
        path = shutil.which(name) if name else None
        if path and _works(name, path):
            return Engine(name, path)
        tried.append(f"{name} ({'not on PATH' if not path else 'does not run'})")
    raise MlctlError(
        "no container engine to build images with: " + "; ".join(tried),
        hint=f"install podman (Debian: apt-get install podman buildah), or set {ENV_ENGINE}=podman|buildah|docker",
    )


def build(
    engine: Engine,
    context: Path,
    dockerfile: Path,
    reference: str,
    labels: dict[str, str],
    build_args: dict[str, str],
    volumes: Sequence[tuple[Path, str]] = (),
    offline: bool = False,
    timeout_s: float = 3600,
) -> str:
    """Build and tag the image; returns its id."""
    if volumes and not engine.mounts_in_build:
        raise MlctlError(f"{engine.name} cannot mount a folder into a build; build with podman or buildah")
    verb = ["bud"] if engine.name == "buildah" else ["build"]
    argv = [
        engine.path,
        *verb,
        "--file",
        str(dockerfile),
        "--tag",
        reference,
        *[a for k, v in labels.items() for a in ("--label", f"{k}={v}")],
        *[a for k, v in build_args.items() for a in ("--build-arg", f"{k}={v}")],
        *[a for host, target in volumes for a in ("--volume", f"{host}:{target}:ro")],
        *(["--network", "none"] if offline else []),
        str(context),
    ]
    tools.run(argv, timeout=timeout_s)
    return image_id(engine, reference)


# `inspect` templates per engine: image id, labels (JSON), size in bytes.
_INSPECT = {
    "podman": (["inspect", "--type", "image"], "{{.Id}}", "{{json .Config.Labels}}", "{{.Size}}"),
    "docker": (["image", "inspect"], "{{.Id}}", "{{json .Config.Labels}}", "{{.Size}}"),
    "buildah": (["inspect", "--type", "image"], "{{.FromImageID}}", "{{json .OCIv1.Config.Labels}}", None),
}


def _inspect(engine: Engine, reference: str, which: int) -> str | None:
    verb, *formats = _INSPECT[engine.name]
    fmt = formats[which]
    if fmt is None:
        return None
    return tools.run([engine.path, *verb, "--format", fmt, reference], timeout=60).strip()


def image_id(engine: Engine, reference: str) -> str:
    return _inspect(engine, reference, 0) or ""


def image_label(engine: Engine, reference: str, label: str) -> str | None:
    """The image's label value ("" when unlabelled); None when the image is not there."""
    try:
        out = _inspect(engine, reference, 1)
    except tools.ToolError:
        return None
    return (json.loads(out or "null") or {}).get(label, "")


def image_size(engine: Engine, reference: str) -> int | None:
    """Bytes on disk (None where the engine does not say)."""
    out = _inspect(engine, reference, 2)
    return int(out) if out else None


def push(engine: Engine, reference: str, auth: dict | None) -> str:
    """Push `reference`; returns the manifest digest the registry stored (sha256:…)."""
    with tempfile.TemporaryDirectory(prefix="mlctl-push-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o700)
        flags: list[str] = []
        env: dict[str, str] = {}
        if auth:
            (folder / "config.json").write_text(json.dumps(auth))
            os.chmod(folder / "config.json", 0o600)
            if engine.name == "docker":
                env["DOCKER_CONFIG"] = str(folder)
            else:
                flags += ["--authfile", str(folder / "config.json")]
        if engine.name == "docker":
            out = tools.run([engine.path, "push", reference], timeout=3600, env=env)
            digest = next((w for w in out.split() if w.startswith("sha256:")), "")
        else:
            digest_file = folder / "digest"
            tools.run([engine.path, "push", *flags, "--digestfile", str(digest_file), reference], timeout=3600)
            digest = digest_file.read_text().strip()
    if not digest.startswith("sha256:"):
        raise MlctlError(f"pushed {reference} but the registry reported no digest")
    return digest
