"""mlctl: take a PyTorch model package from training to a Seldon Core (or KServe) deployment, from one spec.

The package is layered. Each row below is a layer, lowest first; a module imports only from its
own row or earlier ones, the targets never from one another (each may use `targets/shared`),
and no imports go in a circle. A `targets/…` row is a package of its own (mlctl/targets/local/,
…), each target's entry point its `target` module. tests/test_layers.py reads this map and holds
the code to it, so the map is also the list of every module.

    base:               errors result poll _yaml valuesfile
    spec:               spec contract specload specdoc secrets artifacts values chartdoc
    tools:              tools helm kubectl engine images predict kserve_pods pods podspec podsecurity podman
    chart:              render chart release
    targets/shared:     check build
    targets/local:      server target serve
    targets/podman:     store target
    targets/kubernetes: store deploy cluster train
    commands:           train actions apply lifecycle init
    cli:                cli __main__

- base: errors with exit codes, typed results, the one wait loop, bounded YAML, values files.
- spec: the pydantic spec, the model contract (a model package's model.yaml) and their loader
  and reference; credentials; trained artifacts; the chart's values contract (values.schema.json
  and the chart README are generated from it).
- tools: the only modules that know an external program's command line (helm, kubectl, the
  container engine, podman) or the wire format of the model server (predict); `pods` builds the
  pods Seldon's operator would (`kserve_pods` those of KServe's controller), `podspec` maps them
  to podman's flags.
- chart: spec → values, what the chart renders from them, and the release computed once per apply.
- targets: where the model runs, on either engine (Seldon or KServe). local: the engine's server
  as a local process; podman: the release's pods under podman, as the kubelet would run them;
  kubernetes: the model store, the training Job, helm upgrade and the SeldonDeployment or
  InferenceService. shared: the check of the model's examples every target ends with, and image
  builds.
- commands: what each CLI command does, as functions returning data (`init` writes a new project
  from templates/blank or a shipped spec); cli: typer, text and JSON.

The serving side is the `runtime` package beside this one (the Seldon and KServe adapters over
any model package, the artifact format, the server's settings), which imports nothing from
mlctl; mlctl reads its settings, contract bounds and artifact format from there. The models are
packages of their own, which mlctl reads (model.yaml, the source) but never imports.
"""

__version__ = "0.1.0"
