"""Does the thread count change a training's float path? Ten steps of the study's image network.

    PYTHONPATH=. python benchmarks/bench_thread_order.py

Trains the study's EfficientNet-Lite0 (64 px, stem and first 4 blocks frozen) for ten AdamW steps
on fixed random images, with 1 and 2 torch threads, oneDNN on and off, each in a fresh process
(torch fixes some thread pools at first use), and prints a hash of the trained weights and the
time. Equal hashes: the same float path. docs/study.md ("Reproducible numbers") quotes the result:
with oneDNN on, 1 and 2 threads end in different weights, which is why the study fixes its
thread count (``model_build.study.design.STUDY_THREADS``) instead of taking the machine's cores.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

STEPS = 10


def train(threads: int, onednn: bool) -> tuple[str, float]:
    import torch

    from model_build.models.image import _EfficientNetFeatures

    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = onednn
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(0)
    network = _EfficientNetFeatures(64, pretrained=True)
    network.freeze(4)
    head = torch.nn.Linear(1280, 2)
    parameters = [p for p in [*network.parameters(), *head.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, 1e-3)
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(40, 3, 64, 64, generator=generator)
    labels = torch.randint(0, 2, (40,), generator=generator)
    started = time.perf_counter()
    for step in range(STEPS):
        batch = slice((step % 5) * 8, (step % 5) * 8 + 8)
        loss = torch.nn.functional.cross_entropy(head(network(images[batch])), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weights = b"".join(p.detach().numpy().tobytes() for p in parameters)
    return hashlib.sha256(weights).hexdigest()[:12], time.perf_counter() - started


def main() -> None:
    if len(sys.argv) == 3:  # one setting, in its own process
        digest, seconds = train(int(sys.argv[1]), sys.argv[2] == "on")
        print(f"{digest} {seconds:.2f}")
        return
    print(f"{'oneDNN':7s} {'threads':8s} {'weights':14s} seconds ({STEPS} steps)")
    for onednn in ("on", "off"):
        for threads in (1, 2):
            out = subprocess.run([sys.executable, __file__, str(threads), onednn], capture_output=True, text=True,
                                 check=True).stdout.split()
            print(f"{onednn:7s} {threads:<8d} {out[-2]:14s} {out[-1]}")


if __name__ == "__main__":
    main()
