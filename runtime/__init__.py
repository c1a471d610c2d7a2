"""The model server runtime: what the serving images carry, for any model package.

A model package is a folder with a `model.yaml` contract and a plain class with `load(folder)` and
`predict(inputs)` (docs/model-contract.md). This package serves it on both engines, with the
hardening written once:

    contract.py       model.yaml as the server reads it (validated earlier by `mlctl validate`)
    settings.py       every environment variable the servers read, its default and its bounds
    artifact.py       the weights folder: written atomically, read back only when its sha256 holds
    decode.py         request bytes and numbers → the contract's arrays, every bound checked first
    served.py         the package's class: verified weights in, checked answers out, health, facts
    seldon.py         Seldon Core v1 adapter (`seldon-core-microservice runtime.seldon.Model`)
    wrapper_fixes.py  what seldon-core 1.17.1's wrapper gets wrong, fixed from outside
    kserve_server.py  KServe adapter (`python -m runtime.kserve_server`), V1 and OIP, REST and gRPC
    kserve_app.py     body limit, JSON errors, /metrics over workers on kserve's app
    oip.py            KServe V1 and Open Inference Protocol requests → the contract's arrays

It imports nothing of mlctl, and no torch: the model's own module brings what it needs.
"""
