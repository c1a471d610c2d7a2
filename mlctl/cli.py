"""The `mlctl` command line: parse, call one function, render the result. Nothing else lives here.

Results go to stdout (plain or `--json`), progress and errors to stderr, so piped output stays
clean. A user's mistake ends in one clear message and exit 2; a failed action in exit 1; neither
prints a traceback (`-v` logs the commands mlctl runs and, on an error, its traceback and causes).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from mlctl import __version__
from mlctl.errors import MlctlError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="mlctl",
    help="Train a PyTorch model and deploy it to Seldon Core or KServe, driven by one spec (spec/mnist.yaml).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,  # locals may hold credentials: keep them out of CI logs
    context_settings={"help_option_names": ["-h", "--help"]},
)

SpecArg = Annotated[
    Path,
    typer.Argument(help="The project spec, e.g. spec/mnist.yaml.", show_default=False, metavar="SPEC"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for machines).")]


def _version(value: bool) -> None:
    if value:
        _write(f"mlctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log the commands mlctl runs, and an error's traceback.")
    ] = False,
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr)


def _write(text: str) -> None:
    """Results verbatim on stdout (no markup, emoji or wrapping: YAML and JSON pass through)."""
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def _emit(result: dict, as_json: bool, text: str) -> None:
    _write(json.dumps(result, indent=2, default=str) if as_json else text)


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="The new project's folder (new or empty).", show_default=False)],
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="Where to start: blank (a class with load and predict stubbed, one example), or a project "
            "this installation ships, by its spec file's or example folder's name.",
        ),
    ] = "blank",
    as_json: JsonOpt = False,
) -> None:
    """Start a project: a spec and a model package that validate at once."""
    from mlctl.init import init as initialise

    result = initialise(folder, start)
    spec = result["spec"]
    _emit(
        result,
        as_json,
        f"{result['folder']}: a new project from {start} (package {result['package']}, "
        f"{len(result['files'])} files)\n  mlctl validate {spec}\n  mlctl apply {spec}",
    )


@app.command()
def validate(spec: SpecArg, as_json: JsonOpt = False) -> None:
    """Check a spec and its model package (model.yaml, the class, the examples): every problem
    with its file, line, column and field, without starting a server."""
    from mlctl import actions

    result = actions.validate(spec)
    _emit(result, as_json, f"{spec}: valid — {result['summary']}")


@app.command()
def schema(
    model: Annotated[
        bool, typer.Option("--model", help="The model contract's (a model package's model.yaml) instead.")
    ] = False,
) -> None:
    """Print the spec's JSON Schema (for editor completion and validation)."""
    if model:
        from mlctl.contract import contract_json_schema

        _write(json.dumps(contract_json_schema(), indent=2))
        return
    from mlctl.spec import spec_json_schema

    _write(json.dumps(spec_json_schema(), indent=2))


@app.command()
def render(
    spec: SpecArg,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the values here instead of stdout.")
    ] = None,
    include_secrets: Annotated[
        bool,
        typer.Option(
            "--include-secrets",
            help="Resolve the spec's credentials into the file (created 0600). Needs --output.",
        ),
    ] = False,
) -> None:
    """Render the Helm values for the chart (for `helm upgrade --install -f`)."""
    from mlctl import actions

    written = actions.render(spec, output, include_secrets)
    if output is None:
        _write(written)
    else:
        err.print(f"wrote {output}" + (" (0600, contains credentials)" if include_secrets else ""))


@app.command()
def template(
    spec: SpecArg,
    pods: Annotated[
        bool,
        typer.Option(
            "--pods",
            help="Print the Pods the cluster runs for them instead: the "
            "training Job's, the predictor's as Seldon 1.17.1's operator (or, engine kserve, "
            "KServe 0.20's controller) builds it, injected containers included, and the helm "
            "test pod.",
        ),
    ] = False,
) -> None:
    """Print the manifests the chart renders for this spec (`helm template`; credentials redacted)."""
    from mlctl import actions

    _write(actions.template(spec, pods=pods))


@app.command()
def train(
    spec: SpecArg,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if an artifact for this spec exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train the model the spec describes (skipped when its artifact already exists)."""
    from mlctl import train as training
    from mlctl.specload import load_spec

    result = training.train(
        load_spec(spec),
        force=force,
        progress=not as_json,
        on_line=lambda line: err.print(f"  [dim]job[/] {escape(line)}"),
    )
    r = result.as_dict()
    verb = ("imported" if result.imported else "trained") if result.trained else "up to date:"
    _emit(
        r,
        as_json,
        f"{verb} {r['artifact']} — test accuracy {r['testAccuracy']:.2%}, "
        f"sha256 {r['sha256'][:12]}" + (f", {r['seconds']:.1f} s" if result.trained else ""),
    )


@app.command()
def build(
    spec: SpecArg,
    push: Annotated[
        bool,
        typer.Option(
            "--push",
            help="Push both images with the spec's registry credentials "
            "and pin the release to the digests the registry answers.",
        ),
    ] = False,
    deps: Annotated[
        str,
        typer.Option(
            "--deps",
            help="Where pip gets packages: host (resolved by this "
            "machine's pip, then an offline build), index (the Dockerfile's own pip, "
            "online) or auto (host when this Python matches the images).",
        ),
    ] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Build the training and serving images (model/*.Dockerfile) with podman, buildah or docker."""
    from mlctl.specload import load_spec
    from mlctl.targets.shared import build as building

    if deps not in ("auto", "host", "index"):
        raise typer.BadParameter(f"{deps!r} is not one of: auto, host, index", param_hint="--deps")
    result = building.build(
        load_spec(spec),
        push=push,
        deps=deps,  # type: ignore[arg-type]
        on_progress=lambda line: err.print(f"[dim]·[/] {escape(line)}"),
    )
    lines = [
        f"{i.reference}  {'built' if i.built else 'up to date'}"
        + (f", {i.size_bytes / 1e6:,.0f} MB" if i.size_bytes else "")
        + (f", pushed {i.digest}" if i.digest else "")
        for i in result.images
    ]
    _emit(
        result.as_dict(), as_json, "\n".join(lines) + f"\n({result.engine}, deps {result.deps}, {result.seconds:.1f} s)"
    )


TargetOpt = Annotated[
    str | None,
    typer.Option(
        "--target", "-t", help="local, podman or kubernetes; defaults to the spec's `target`.", show_default=False
    ),
]


def _target(value: str | None) -> str | None:
    if value not in (None, "local", "podman", "kubernetes"):
        raise typer.BadParameter(f"{value!r} is not one of: local, podman, kubernetes", param_hint="--target")
    return value


_MARK = {"ok": "[green]✓[/]", "changed": "[yellow]●[/]", "up to date": "[green]=[/]", "planned": "[cyan]→[/]"}


@app.command()
def apply(
    spec: SpecArg,
    target: TargetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Do what the spec needs, and only that: train if needed, then serve locally or deploy."""
    from mlctl import apply as applying

    def show(step) -> None:
        err.print(f"{_MARK.get(step.status, '·')} {step.name:<9} {escape(step.detail)}")

    result = applying.apply(
        spec,
        _target(target),
        dry_run=dry_run,
        on_step=show,
        on_log=lambda line: err.print(f"  [dim]│[/] {escape(line)}"),
    )
    _emit(result.as_dict(), as_json, _apply_text(result))


def _apply_text(result) -> str:
    s = result.summary
    if result.dry_run:
        return "dry run: " + ("nothing to do" if not result.changed else "the steps marked → would run")
    head = "up to date: nothing changed" if not result.changed else f"applied in {result.seconds:.1f} s"
    if result.target == "podman":
        return (
            f"{head}\nmodel sha256 {s['modelSha256'][:12]}…, test accuracy {s['testAccuracy']:.2%}\n"
            f"predictions (the predictor Service, published): {s['url']}\n"
            f"  mlctl predict FILE --url {s['baseUrl']}{s.get('predictFlags', '')}\n"
            f"stop it with: mlctl delete {s['spec']} --target podman"
        )
    if result.target == "local":
        from mlctl.contract import kind_of

        image = kind_of(Path(s["sample"])) == "image"
        curl = f"  curl -F binData=@{s['sample']} {s['url']}\n" if s["protocol"] == "seldon" and image else ""
        return (
            f"{head}\nmodel sha256 {s['modelSha256'][:12]}…, test accuracy {s['testAccuracy']:.2%}\n"
            f"predictions: {s['url']}\n{curl}"
            f"  mlctl predict {s['sample']} --url {s['baseUrl']}{s['predictFlags']}\n"
            f"stop it with: mlctl delete {s['spec']}"
        )
    return (
        f"{head}\nrelease {s['release']} revision {s['revision']}, model sha256 {s['modelSha256'][:12]}…, "
        f"test accuracy {s['testAccuracy']:.2%}\nsmoke test: {s['smoke']}"
    )


@app.command()
def serve(
    spec: SpecArg,
    port: Annotated[int | None, typer.Option("--port", "-p", help="HTTP port (default: serving.local.port).")] = None,
) -> None:
    """Run the engine's real model server on the trained artifact, in the foreground (Ctrl-C stops it)."""
    from mlctl import predict as predicting
    from mlctl.targets.local import serve as serving

    with serving.serve(spec, port) as srv:
        protocol = predicting.ENGINE_PROTOCOL[srv.cfg.engine]
        err.print(f"serving {srv.cfg.model_dir} with {srv.cfg.workers} workers (ready in {srv.ready_after_s:.1f} s)")
        _write(srv.url + predicting.endpoint_for(protocol, srv.cfg.model_name))
        sys.stdout.flush()
        flags = predicting.cli_flags(protocol, spec)
        err.print(f"try: mlctl predict FILE --url {srv.url}{flags}    (Ctrl-C stops the server)")
        serving.wait_until_interrupted(srv)
    err.print("stopped")


@app.command()
def predict(
    files: Annotated[
        list[Path],
        typer.Argument(
            help="Input files: images (PNG, JPEG, …) or tensors (.json: one item's numbers, or a batch).",
            show_default=False,
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            "-s",
            help="Read the model's contract from this spec: its input names, class labels and scores, "
            "and the model name in v2/v1 paths. Without it: inputs `image` / `input-0`, classes by index.",
            show_default=False,
        ),
    ] = None,
    url: Annotated[str, typer.Option("--url", help="The server's base URL.")] = "http://127.0.0.1:9000",
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="seldon (multipart binData; engine seldon), v2 (the Open Inference Protocol; engine "
            "kserve) or v1 (KServe's V1).",
        ),
    ] = "seldon",
    model: Annotated[
        str | None,
        typer.Option("--model", help="The model's name in v2/v1 paths (default: the spec's name).", show_default=False),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="Override the path: e.g. /predict (seldon). Default: /api/v1.0/predictions, "
            "/v2/models/MODEL/infer or /v1/models/MODEL:predict.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Post each file to the model server and print the predicted class and its scores."""
    from rich.table import Table

    from mlctl import predict as predicting

    if protocol not in predicting.PROTOCOLS:
        raise typer.BadParameter(
            f"{protocol!r} is not one of: {', '.join(predicting.PROTOCOLS)}", param_hint="--protocol"
        )
    contract, name = None, model or "model"
    if spec is not None:
        from mlctl.specload import load_contract, load_spec

        loaded = load_spec(spec)
        contract, name = load_contract(loaded.model), model or loaded.name
    results = [
        (p, predicting.predict_file(url, p, contract, endpoint=endpoint, protocol=protocol, model=name)) for p in files
    ]
    if as_json:
        rows = [{"input": str(p), "class": r.label, "index": r.cls, "scores": r.scores} for p, r in results]
        _emit({"predictions": rows}, True, "")
        return
    labels = results[0][1].labels
    shown = f"scores ({labels[0]}–{labels[-1]})" if len(labels) > 2 else "scores"
    table = Table("input", "class", "p", shown, box=None)
    for p, r in results:
        table.add_row(str(p), r.label, f"{r.scores[r.cls]:.3f}", " ".join(f"{x:.2f}" for x in r.scores))
    out.print(table)


@app.command()
def status(spec: SpecArg, target: TargetOpt = None, as_json: JsonOpt = False) -> None:
    """Show what is running for this spec: the local server, its podman pods, or the release."""
    from mlctl import lifecycle

    result = lifecycle.status(spec, _target(target))
    _emit(result, as_json, "\n".join(_status_lines(result)))


def _status_lines(result: dict) -> list[str]:
    lines = []
    for key, value in result.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{key}:")
            lines += ["  " + ", ".join(f"{k} {v}" for k, v in item.items()) for item in value]
        else:
            lines.append(f"{key}: {value}")
    return lines


@app.command()
def models(spec: SpecArg, target: TargetOpt = None, as_json: JsonOpt = False) -> None:
    """List the spec's models: trained here, in the store, and which release revision serves which."""
    from mlctl import lifecycle

    result = lifecycle.models(spec, _target(target))
    _emit(result, as_json, "\n".join(_models_lines(result)))


def _models_lines(result: dict) -> list[str]:
    def row(m: dict) -> str:
        mark = "*" if m.get("current") else " "
        return (
            f" {mark} {m['name']}  sha256 {m['sha256'][:12]}…  test accuracy {m['testAccuracy']:.2%}  {m['location']}"
        )

    lines = ["here (training.output):", *(row(m) for m in result["local"])] if result["local"] else ["here: none"]
    stored = result.get("stored")
    if isinstance(stored, list):
        lines += ["in the store:", *(row(m) for m in stored)] if stored else ["in the store: none"]
    elif stored:
        lines.append(f"in the store: {stored}")
    for r in result.get("revisions", []):
        lines.append(
            f"revision {r['revision']}: {r.get('modelUri')} (sha256 {str(r.get('modelSha256'))[:12]}…)"
            + (f", {r['status']}" if r.get("status") else "")
        )
    for s in result.get("serving", []):
        lines.append(f"served at {s['server']}: sha256 {s['modelSha256'][:12]}…")
    lines.append(f"(* the spec's model now: {result['current']})")
    return lines


@app.command()
def rollback(
    spec: SpecArg,
    revision: Annotated[
        int | None,
        typer.Option("--revision", "-r", help="The revision to serve again (default: the one before the current)."),
    ] = None,
    target: TargetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Serve an earlier revision's model again (`helm rollback`, or its recorded values under podman)."""
    from mlctl import lifecycle

    def show(step: str, status: str, detail: str) -> None:
        err.print(f"{_MARK.get(status, '·')} {step:<9} {escape(detail)}")

    result = lifecycle.rollback(spec, _target(target), revision, report=show)
    _emit(
        result,
        as_json,
        f"rolled back to revision {result['to']} (now revision {result['revision']}): "
        f"{result['modelUri']}, sha256 {result['modelSha256']}",
    )


@app.command()
def delete(spec: SpecArg, target: TargetOpt = None, as_json: JsonOpt = False) -> None:
    """Stop the local server or uninstall the release. Trained artifacts are kept."""
    from mlctl import lifecycle

    result = lifecycle.delete(spec, _target(target))
    _emit(result, as_json, result.get("summary", ""))


def main() -> None:
    """Console entry point: run the app; show an MlctlError once, without a traceback."""
    try:
        app(prog_name="mlctl")
    except MlctlError as exc:
        # -v: where it came from, causes included (a user's mistake shows no traceback otherwise).
        logging.getLogger("mlctl").debug("traceback of the error below:", exc_info=exc)
        err.print(f"[bold red]error:[/] {escape(exc.message)}")
        if exc.hint:
            err.print(f"[dim]hint:[/] {escape(exc.hint)}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
