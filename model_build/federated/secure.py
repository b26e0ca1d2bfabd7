"""Secure aggregation's FLARE components (server side): FedAvg over encrypted updates.

FLARE's form of secure aggregation is homomorphic encryption with TenSEAL's CKKS scheme
(``nvflare.app_opt.he``; the keys come from ``HEBuilder`` at provisioning, the secret key in the
sites' kits only). :func:`.deploy.secure_recipe` wires these two with FLARE's HE filters at the
sites. Kept apart from :mod:`.controller` because importing FLARE's HE package needs TenSEAL.
"""

from __future__ import annotations

import numpy as np
import torch
from nvflare.apis.controller_spec import ClientTask, Task
from nvflare.apis.dxo import from_shareable
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.app_event_type import AppEventType
from nvflare.app_common.workflows.scatter_and_gather import ScatterAndGather
from nvflare.app_opt.he.intime_accumulate_model_aggregator import HEInTimeAccumulateWeightedAggregator

from model_build.federated.controller import ROUNDS_FILE, round_record, run_file, write_run_file

GLOBAL_MODEL_FILE = "sarco-global-model.pt"  # the last global model, decrypted by the sites
DECRYPT_TASK = "validate"  # FLARE's HE recipe decrypts this task's data at the sites (fedavg_he.py)


class AtLeastTwoUpdates(HEInTimeAccumulateWeightedAggregator):
    """FLARE's encrypted weighted sum, refusing a round of fewer than two updates: the average of
    one update is that site's update, and every average is decrypted by a site (the next round's
    model) or, at the end, handed back in the clear. The job then stops with the reason instead."""

    def aggregate(self, fl_ctx: FLContext) -> Shareable:
        updates = sorted({entry["contributor_name"] for collection in self.dxo_aggregators.values()
                          for entry in collection.aggregation_helper.get_history()})
        if len(updates) < 2:
            raise RuntimeError(f"sarco: {len(updates)} update(s) this round ({', '.join(updates) or 'none'}); secure "
                               "aggregation averages at least 2, so that no single site's update is decrypted")
        return super().aggregate(fl_ctx)


def agreed_model(decrypted: dict[str, dict[str, np.ndarray]], tolerance: float):  # noqa: ANN201
    """(the global model, None) when every site's decryption of it agrees within ``tolerance``,
    else (None, the reason)."""
    if not decrypted:
        return None, "no site returned the decrypted global model"
    first, *others = sorted(decrypted)
    model = decrypted[first]
    for other in others:
        if set(decrypted[other]) != set(model):
            return None, f"{first} and {other} returned different tensors"
        gap = max(float(np.max(np.abs(model[key] - decrypted[other][key]))) for key in model)
        if gap > tolerance:
            return None, f"{first} and {other} decrypted different global models (largest gap {gap:.3g})"
    return model, None


class SecureRounds(ScatterAndGather):
    """FedAvg under secure aggregation: FLARE's homomorphic-encryption workflow, the
    ``ScatterAndGather`` that ``FedAvgRecipeWithHE`` builds (nvflare/app_opt/pt/recipes/fedavg_he.py),
    with this project's round record and one step after the last round.

    Each site encrypts its update with the federation's TenSEAL CKKS key (``HEModelEncryptor``,
    weighted by its participants), the server adds the ciphertexts without being able to read
    them (:class:`AtLeastTwoUpdates`; its context holds no secret key) and sends the encrypted
    average back, which each site decrypts (``HEModelDecryptor``). The server never holds a
    site's update in the clear, nor any round's average but the last. ``ScatterAndGather`` ends
    after aggregating the last round, so that average would stay encrypted on the server: it is
    sent to the live sites one at a time until two have returned it decrypted and agree (one, if
    only one is left), and written to ``sarco-global-model.pt`` in the run folder for the
    coordinator's bundle. A site whose answer is an error is passed over.

    Site tolerance is ``ScatterAndGather``'s own: a round ends once ``min_clients`` updates are in
    and ``wait_time_after_min_received`` seconds have passed, or ``train_timeout`` after it began."""

    AGREEMENT = 1e-3  # two sites' decryptions of one ciphertext differ by CKKS noise only (about 1e-6)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._rounds: dict[int, tuple[list[str], set[str]]] = {}  # round -> (sent to, updates from)
        self._decrypted: dict[str, dict[str, np.ndarray]] = {}

    def _alive(self) -> list[str]:
        """The job's sites the server has not deemed disconnected."""
        names = [client.name for client in self._engine.get_clients()]
        return sorted(name for name in names if not self.communicator.get_client_disconnect_time(name))

    def _accept_train_result(self, client_name: str, result: Shareable, fl_ctx: FLContext,
                             is_unknown_task: bool = False) -> bool:
        accepted = super()._accept_train_result(client_name, result, fl_ctx, is_unknown_task)
        if accepted and self._current_round in self._rounds:
            self._rounds[self._current_round][1].add(client_name)
        return accepted

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        super().handle_event(event_type, fl_ctx)
        if event_type == AppEventType.ROUND_STARTED:
            self._rounds[self._current_round] = (self._alive(), set())
        elif event_type == AppEventType.ROUND_DONE and self._current_round in self._rounds:
            records = {number: round_record(number, *sites) for number, sites in sorted(self._rounds.items())}
            self.log_info(fl_ctx, records[self._current_round][1])
            write_run_file(self._engine, fl_ctx, ROUNDS_FILE, [record for record, _ in records.values()])

    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        super().control_flow(abort_signal, fl_ctx)
        if abort_signal.triggered or self._phase != AppConstants.PHASE_FINISHED:
            return
        for name in self._alive():
            data = self.shareable_gen.learnable_to_shareable(self._global_weights, fl_ctx)
            data.set_header(AppConstants.CURRENT_ROUND, self._num_rounds)
            task = Task(name=DECRYPT_TASK, data=data, timeout=self._train_timeout,
                        result_received_cb=self._keep_decrypted)
            self.send_and_wait(task=task, fl_ctx=fl_ctx, targets=[name], abort_signal=abort_signal)
            if len(self._decrypted) == 2 or abort_signal.triggered:
                break
        model, refusal = agreed_model(self._decrypted, self.AGREEMENT)
        if refusal is not None:
            self.system_panic(f"sarco: {refusal}; no bundle is written", fl_ctx)
            return
        torch.save({"model": {key: torch.as_tensor(value) for key, value in model.items()}},
                   run_file(self._engine, fl_ctx, GLOBAL_MODEL_FILE))
        self.log_info(fl_ctx, f"sarco global model decrypted by {' and '.join(sorted(self._decrypted))}: "
                      f"{len(model)} tensors")

    def _keep_decrypted(self, client_task: ClientTask, fl_ctx: FLContext) -> None:
        result, name = client_task.result, client_task.client.name
        client_task.result = None
        if result.get_return_code() != ReturnCode.OK:
            self.log_warning(fl_ctx, f"sarco: {name} did not decrypt the global model ({result.get_return_code()})")
            return
        self._decrypted[name] = {key: np.asarray(value) for key, value in from_shareable(result).data.items()}
