"""TEST DOUBLE of ``cuda.bindings`` (cuda-python >= 12.6.1 moved the runtime module here).
With SARCO_FAKE_CUDA_LAYOUT=legacy it is absent, as in older cuda-python releases."""

import os

if os.environ.get("SARCO_FAKE_CUDA_LAYOUT", "bindings") == "legacy":
    raise ImportError("cuda.bindings: not in this (older) cuda-python")
