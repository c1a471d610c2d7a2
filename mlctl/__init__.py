"""mlctl: take the PyTorch MNIST CNN from training to a Seldon Core deployment, from one spec."""

__version__ = "0.1.0"
