"""Workstation side of sarco: cohorts, synthetic data, diagnostic criteria, statistics,
training, the study report and ONNX export. Console script: ``sarco``."""
