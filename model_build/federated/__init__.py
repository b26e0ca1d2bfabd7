"""Training across hospitals without pooling their data (issue #19), on NVIDIA FLARE.

Why FLARE and not Flower: every Flower release caps packages this project pins above those caps
(protobuf, typer, rich, packaging, fastapi, starlette, uvicorn), while FLARE installs beside the
pinned workstation environment unchanged; docs/federated.md has the resolver's lines.

The pieces, each importable without FLARE installed except :mod:`.simulate`, :mod:`.deploy`,
:mod:`.controller`, :mod:`.secure` (which also needs TenSEAL) and :mod:`.client`:

- :mod:`.encoders`: the clinical/lab encoders agreed from per-site sums, so that every site's
  network has the same inputs;
- :mod:`.network`: the study's :class:`~model_build.models.fusion.FusionModel`, built from
  JSON-able arguments (what FLARE's PyTorch persistor needs to build the server's copy);
- :mod:`.site`: one site's rounds with the existing :class:`~model_build.models.train.Trainer`;
- :mod:`.client`: the script FLARE runs at each site (its Client API loop);
- :mod:`.simulate`: the whole federation on one machine (FLARE's simulator), ending in a bundle;
- :mod:`.deploy`: the same on FLARE's deployment runtime (startup kits, a coordinator process,
  one process per site, mutual TLS), with :mod:`.controller`'s FedAvg that goes on without a
  site that drops out, or :mod:`.secure`'s FedAvg over encrypted updates;
- :mod:`.privacy`: differential privacy on the sites' updates;
- :mod:`.compare` and :mod:`.pooled`: pooled, federated and single-site training side by side.
"""

STRATEGIES = ("fedavg", "fedprox", "fedbn")
"""FedAvg (McMahan et al. 2017): the participant-weighted mean of the sites' weights; FedProx
(Li et al. 2020): the same mean, with a proximal term in each site's loss; FedBN (Li et al.
2021): FedAvg, but each site trains with its own batch-norm layers (statistics and affine
weights), the remedy for sites whose scanners differ. Here, not in :mod:`.simulate`, so that
the command line lists them without importing torch."""

DEFAULT_FEDPROX_MU = 0.01
"""FedProx's proximal coefficient when none is given (one of the values the FedProx paper tried)."""
