"""Workstation side of sarco: cohorts, synthetic data, diagnostic criteria, statistics,
training, the study report and ONNX export. Console script: ``sarco``."""


def load_model(folder, device: str = "auto"):  # noqa: ANN001, ANN201 - see model_build.api
    """``model_build.api.load_model``, imported lazily so ``import model_build`` stays light."""
    from model_build.api import load_model as load

    return load(folder, device)
