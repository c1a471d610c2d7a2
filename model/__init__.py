"""The MNIST model: network, data, preprocessing, training entrypoint and the Seldon class.

This package stands alone: it never imports mlctl, so the training and serving images carry
only this folder.
"""
