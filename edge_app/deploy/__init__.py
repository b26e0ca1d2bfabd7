"""Deployment on the device: signed model updates with an atomic switch and rollback, TensorRT
engines built on the device (and rebuilt when they go stale), a self-test that gates a new model,
health telemetry from ``tegrastats`` and systemd integration (docs/deployment.md).

The update package itself (golden set, signatures, the tar file) and its error type,
``DeployError``, are the workstation's and the device's shared contract: ``sarco_core.update``.

Like the rest of ``edge_app`` this package stays light: the standard library, numpy, ONNX
Runtime, paho-mqtt and ``cryptography`` (Ed25519). TensorRT and cuda-python are imported only
inside the functions that build or run an engine, so everything else here runs and is tested on
a machine without a GPU.
"""
