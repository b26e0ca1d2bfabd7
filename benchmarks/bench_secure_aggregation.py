"""What secure aggregation costs a site per round: the update's size in the clear and encrypted,
and the time to encrypt and decrypt it, for the federation's networks.

    PYTHONPATH=. python benchmarks/bench_secure_aggregation.py [--modalities image] \
        [--modalities image,clinical,lab --cohort COHORT]

(clinical or lab inputs need a COHORT, whose column sums size their encoders.)

The encryption is what `sarco federated coordinator --secure-aggregation` runs at each site:
FLARE's ``HEModelEncryptor`` encrypts every tensor as one TenSEAL CKKS vector, with the context
FLARE's ``HEBuilder`` provisions (its defaults: polynomial degree 8192, coefficient moduli
60/40/40 bits, scale 2^40). Issue #19 asks for an upload of at most one model update per site
and round: this prints the factor.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tenseal as ts
from nvflare.lighter.impl.he import HEBuilder

from model_build.federated.encoders import agree_encoders, site_statistics
from model_build.federated.network import FederatedNetwork
from model_build.federated.simulate import federation_options, network_arguments


def site_context() -> ts.Context:
    """A site's context (with the secret key) as FLARE's HEBuilder provisions it."""
    builder = HEBuilder()
    builder.initialize(None, None)  # its arguments are not read (nvflare/lighter/impl/he.py)
    return ts.context_from(builder.get_serialized_context(is_client=True))


def measure(modalities: list[str], context: ts.Context, cohort: Path | None) -> dict:
    options = federation_options(modalities, 0)
    tabular = [m for m in modalities if m != "image"]
    if tabular and cohort is None:
        raise SystemExit(f"--modalities {','.join(modalities)}: give --cohort COHORT to size the {tabular} encoders")
    encoders = agree_encoders([site_statistics(cohort, options)]) if tabular else {}
    network = network_arguments(options, encoders)
    state = FederatedNetwork(**network).state_dict()
    clear_bytes = sum(value.numel() * value.element_size() for value in state.values())
    sent, encrypt_s, decrypt_s = 0, 0.0, 0.0
    for name, value in state.items():
        values = value.detach().double().numpy().ravel() * 88.0  # weighted by participants, as the encryptor does
        started = time.perf_counter()
        vector = ts.ckks_vector(context, values)
        encrypt_s += time.perf_counter() - started
        sent += len(vector.serialize())
        started = time.perf_counter()
        np.asarray(vector.decrypt())
        decrypt_s += time.perf_counter() - started
    return {"modalities": "+".join(modalities), "tensors": len(state), "values": sum(v.numel() for v in state.values()),
            "clear_mb": clear_bytes / 1e6, "sent_mb": sent / 1e6, "encrypt_s": encrypt_s, "decrypt_s": decrypt_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modalities", action="append", help="comma-separated data types (repeatable)")
    parser.add_argument("--cohort", type=Path, help="a cohort folder (for clinical or lab inputs)")
    args = parser.parse_args()
    context = site_context()
    print("| model | tensors | values | update in the clear | sent encrypted | factor | encrypt s | decrypt s |")
    print("|---|---|---|---|---|---|---|---|")
    for modalities in args.modalities or ["image"]:
        row = measure(modalities.split(","), context, args.cohort)
        print(f"| {row['modalities']} | {row['tensors']} | {row['values']:,} | {row['clear_mb']:.2f} MB | "
              f"{row['sent_mb']:.1f} MB | {row['sent_mb'] / row['clear_mb']:.1f}x | {row['encrypt_s']:.1f} | "
              f"{row['decrypt_s']:.1f} |")


if __name__ == "__main__":
    main()
