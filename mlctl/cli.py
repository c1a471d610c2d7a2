"""The `mlctl` command line: parse, call one function, render the result. Nothing else lives here.

Results go to stdout (plain or `--json`), progress and errors to stderr, so piped output stays
clean. A user's mistake ends in one clear message and exit 2; a failed action in exit 1; neither
prints a traceback (`-v` logs the commands mlctl runs).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from mlctl import __version__
from mlctl.errors import EXIT_USAGE, MlctlError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="mlctl",
    help="Train the MNIST CNN and deploy it to Seldon Core, driven by one spec (spec/mnist.yaml).",
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
        out.print(f"mlctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log the commands mlctl runs.")] = False,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = None,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s", stream=sys.stderr
    )


def _emit(result: dict, as_json: bool, text: str) -> None:
    out.print(json.dumps(result, indent=2, default=str) if as_json else text, markup=False)


@app.command()
def validate(spec: SpecArg, as_json: JsonOpt = False) -> None:
    """Check a spec: every problem with its file, line, column and field."""
    from mlctl import actions

    result = actions.validate(spec)
    _emit(result, as_json, f"{spec}: valid — {result['summary']}")


@app.command()
def schema() -> None:
    """Print the spec's JSON Schema (for editor completion and validation)."""
    from mlctl.spec import spec_json_schema

    out.print(json.dumps(spec_json_schema(), indent=2), markup=False)


@app.command()
def render(
    spec: SpecArg,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write the values here instead of stdout.")
    ] = None,
    include_secrets: Annotated[
        bool,
        typer.Option(
            "--include-secrets",
            help="Resolve the spec's credentials into the file (created 0600). Needs --output.",
        ),
    ] = False,
) -> None:
    """Render the Helm values for charts/mnist-seldon (for `helm upgrade --install -f`)."""
    from mlctl import actions

    written = actions.render(spec, output, include_secrets)
    if output is None:
        out.print(written, markup=False, end="")
    else:
        err.print(f"wrote {output}" + (" (0600, contains credentials)" if include_secrets else ""))


@app.command()
def template(spec: SpecArg) -> None:
    """Print the manifests the chart renders for this spec (`helm template`; credentials redacted)."""
    from mlctl import actions

    out.print(actions.template(spec), markup=False, end="")


@app.command()
def train(
    spec: SpecArg,
    force: Annotated[bool, typer.Option("--force", help="Retrain even if an artifact for this spec exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train the model the spec describes (skipped when its artifact already exists)."""
    from mlctl import train as training
    from mlctl.spec import load_spec

    result = training.train(load_spec(spec), force=force, progress=not as_json)
    r = result.as_dict()
    verb = "trained" if result.trained else "up to date:"
    _emit(r, as_json, f"{verb} {r['artifact']} — test accuracy {r['testAccuracy']:.2%}, "
                      f"sha256 {r['sha256'][:12]}" + (f", {r['seconds']:.1f} s" if result.trained else ""))


def main() -> None:
    """Console entry point: run the app; show an MlctlError once, without a traceback."""
    try:
        app(prog_name="mlctl")
    except MlctlError as exc:
        err.print(f"[bold red]error:[/] {escape(exc.message)}")
        if exc.hint:
            err.print(f"[dim]hint:[/] {escape(exc.hint)}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
