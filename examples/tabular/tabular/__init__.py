"""A second example model package: a small tabular classifier, pump sensor readings → fault class.

Where `model/` (MNIST) shows an image model, this shows the smallest complete package mlctl
takes to a server: generated data (data.py), a network that carries its own standardisation
(net.py), the training entrypoint mlctl runs (train.py), the contract's class (model.py) and
the contract itself (model.yaml), with examples every smoke test posts.
"""
