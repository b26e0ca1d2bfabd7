"""TEST DOUBLE of the older ``cuda.cudart`` module (cuda-python before 12.6.1; later releases
keep it as a deprecated alias of ``cuda.bindings.runtime``)."""

import importlib.util
import sys
from pathlib import Path

# load the same fake runtime without importing cuda.bindings (absent in the legacy layout)
_spec = importlib.util.spec_from_file_location(
    "cuda._fake_runtime", Path(__file__).parent / "bindings" / "runtime.py")
_runtime = importlib.util.module_from_spec(_spec)
sys.modules["cuda._fake_runtime"] = _runtime
_spec.loader.exec_module(_runtime)
globals().update({k: v for k, v in vars(_runtime).items() if not k.startswith("__")})
