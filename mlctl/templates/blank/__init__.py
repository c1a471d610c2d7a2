"""Your model package: model.yaml (the contract), model.py (the class), train.py (training)."""
