"""results.json's ``provenance``: what a reader compares first when two runs differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model_build.study.provenance import THREAD_VARIABLES, cpu, provenance


def test_the_cpu_model_is_read_from_cpuinfo_and_a_machine_without_it_still_records_one(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.10GHz\nflags\t: avx2\n", encoding="utf-8")
    assert cpu(cpuinfo)["model"] == "Example CPU @ 2.10GHz"
    found = cpu(tmp_path / "absent")
    assert found["machine"] and found["usable_cores"] >= 1


def test_threads_determinism_and_the_environment_are_those_of_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    found = provenance()
    assert found["environment"]["OMP_NUM_THREADS"] == "2" and found["environment"]["MKL_NUM_THREADS"] is None
    assert set(found["environment"]) == set(THREAD_VARIABLES)
    assert found["torch"]["intra_op_threads"] == torch.get_num_threads()
    assert found["torch"]["deterministic_algorithms"] == torch.are_deterministic_algorithms_enabled()
    assert found["packages"]["numpy"] == np.__version__ and found["packages"]["torch"] == torch.__version__
