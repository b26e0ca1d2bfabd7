"""Putting the TensorRT / cuda-python test doubles (tests/support/doubles, not TensorRT) in place for a
test, in-process or for a subprocess. No tests here."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DOUBLES = Path(__file__).parent / "doubles"
JETPACK_62 = {"SARCO_FAKE_TENSORRT": "10.3.0", "SARCO_FAKE_CUDA_DRIVER": "12060",
              "SARCO_FAKE_CUDA_RUNTIME": "12060"}
# what an unpinned `pip install cuda-python` brings today beside JetPack 6.2's driver
UNPINNED_CUDA_PYTHON = {**JETPACK_62, "SARCO_FAKE_CUDA_RUNTIME": "13000"}
_FAKED = ("tensorrt", "cuda", "edge_app.inference.tensorrt_engine")


def _forget_faked_modules() -> None:
    for name in list(sys.modules):
        if any(name == root or name.startswith(f"{root}.") for root in _FAKED):
            del sys.modules[name]


@contextmanager
def installed_double(**environment: str) -> Iterator[None]:
    """Within the block, ``import tensorrt`` and ``import cuda`` give the doubles configured
    by ``environment`` (tests/support/doubles/README.md); the real modules (none here) come back after."""
    settings = {**JETPACK_62, **environment}
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    sys.path.insert(0, str(DOUBLES))
    _forget_faked_modules()
    try:
        yield
    finally:
        sys.path.remove(str(DOUBLES))
        _forget_faked_modules()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def double_environment(**environment: str) -> dict[str, str]:
    """os.environ for a subprocess that should import the doubles."""
    path = os.pathsep.join(filter(None, [str(DOUBLES), os.environ.get("PYTHONPATH")]))
    return {**os.environ, **JETPACK_62, **environment, "PYTHONPATH": path}
