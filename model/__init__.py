"""The MNIST model: network, data, preprocessing, training entrypoint, the served network
(inference.py) and the two servers over it: the Seldon class (serving.py) and the KServe runtime
(kserve_server.py, with its request formats in oip.py and its additions to kserve's app in
kserve_app.py).

This package stands alone: it never imports mlctl, so the training and serving images carry
only this folder.
"""
