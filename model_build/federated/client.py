"""The script FLARE runs at each site: its Client API loop around :class:`.site.Site`.

FLARE's ``ScriptRunner`` runs this file (in the site's process, as ``__main__``) with
``--config FILE``: the federation's plan written by :mod:`.simulate` (which cohort folder each
site name reads, the training options, the agreed encoders); or, deployed (:mod:`.deploy`),
with ``--plan WORD``: the options only, while the site's cohort folder comes from its own
process's environment (``SARCO_SITE_COHORT``, set by ``sarco federated site``). The loop is FLARE's documented
Client API pattern: ``flare.init()``, then while ``flare.is_running()``: ``flare.receive()``
the global model, train, ``flare.send()`` an ``FLModel`` whose meta ``NUM_STEPS_CURRENT_ROUND``
is the FedAvg weight (here: the site's training participants). Under FedProx the server puts
``fedprox_mu`` in each training model's meta (``FedAvg`` workflow, ``set_fedprox_metadata``), and
a raw PyTorch client must apply the proximal term itself (``FedProxRecipe``'s docstring).
Under differential privacy (:mod:`.privacy`) the weights leave clipped and noised, and no
metric leaves at all. A deployment whose model has clinical or lab inputs first runs a job of
one ``statistics`` task (:class:`.controller.CollectStatistics`): the site answers with the
column sums the encoders are agreed from (:mod:`.encoders`). Under secure aggregation FLARE's
filters around this loop decrypt each model received and encrypt each update sent; FedProx's mu
then comes from the plan, and the one ``validate`` task, after the last round, is answered with
the final average as this site decrypted it (:class:`.secure.SecureRounds`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import nvflare.client as flare
from nvflare.app_common.app_constant import AlgorithmConstants

from model_build.federated.controller import STATISTICS_TASK
from model_build.federated.encoders import site_statistics
from model_build.federated.privacy import site_refusal
from model_build.federated.site import Site, note
from model_build.models.train import TrainOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--config", type=Path, help="the simulation's plan file (every site's cohort folder)")
    given.add_argument("--plan", help="a deployment's plan, base64 JSON (options only; no path)")
    arguments = parser.parse_args()
    flare.init()
    name = flare.get_site_name()
    if arguments.config is not None:
        plan = json.loads(arguments.config.read_text(encoding="utf-8"))
        cohort, out, max_epsilon = Path(plan["sites"][name]), Path(plan["work"]) / name, None
    else:  # deployed: this site's own folders come from its own process's environment
        from model_build.federated.deploy import COHORT_VARIABLE, EPSILON_VARIABLE, WORK_VARIABLE, decode_plan

        if COHORT_VARIABLE not in os.environ:
            raise SystemExit(f"{name}: {COHORT_VARIABLE} is not set; start the site with `sarco federated site`")
        plan = decode_plan(arguments.plan)
        max_epsilon = float(os.environ[EPSILON_VARIABLE]) if os.environ.get(EPSILON_VARIABLE) else None
        cohort = Path(os.environ[COHORT_VARIABLE])
        out = Path(os.environ.get(WORK_VARIABLE) or Path.cwd() / "sarco-site") / name
    site = None  # built at the first training task: it needs the agreed encoders
    while flare.is_running():
        received = flare.receive()
        if received is None:
            break
        task = flare.get_task_name()
        refusal = site_refusal(plan, max_epsilon, task)
        if refusal is not None:  # the site's own privacy floor (sarco federated site --max-epsilon)
            note(out, f"refused {task}: {refusal}")
            print(f"[{name}] refused: {refusal}", flush=True)
            if task == STATISTICS_TASK:  # an answer without sums: the others' are agreed
                flare.send(flare.FLModel(metrics={"refused": 1}))
                continue
            raise SystemExit(f"{name}: {refusal}")
        if task == STATISTICS_TASK:  # a deployment's first job (clinical/lab inputs)
            statistics = site_statistics(cohort, TrainOptions(**plan["options"]))
            flare.send(flare.FLModel(metrics={"modalities": len(statistics)}, meta={"statistics": statistics}))
            note(out, f"sent the column sums of its training rows for {sorted(statistics)}")
            continue
        site = site or Site.from_plan(plan, name, cohort, out)
        site.note(f"round {received.current_round}: received the global model ({task})")
        if flare.is_train():  # FedProx's mu: in each model's meta (FedProxRecipe), or in the plan (secure rounds)
            fedprox_mu = (received.meta or {}).get(AlgorithmConstants.FEDPROX_MU) or plan.get("fedprox_mu")
            weights, metrics = site.train_round(received.params, received.current_round or 0, fedprox_mu)
            site.keep_sent(received.current_round or 0, weights, metrics, fedprox_mu)
            sent = site.sendable(metrics)
            flare.send(flare.FLModel(params=weights, metrics=sent,
                                     meta={"NUM_STEPS_CURRENT_ROUND": site.participants}))
        elif plan.get("secure_aggregation"):  # the encrypted final average, decrypted here, goes back
            weights = {key: value.detach().cpu().clone() for key, value in site.load(received.params).model
                       .state_dict().items()}
            sent = "the decrypted global model"
            flare.send(flare.FLModel(params=weights))
        else:  # validate: the global model's loss only, no weights
            site.load(received.params)
            sent = site.sendable({"validation_log_loss": site.evaluate()})
            flare.send(flare.FLModel(metrics=sent or {}))  # FLARE refuses a model with neither params nor metrics
        site.note(f"round {received.current_round}: sent {'weights and ' if flare.is_train() else ''}{sent}")
        print(f"[{name}] round {received.current_round} ({task}): sent {sent}", flush=True)


if __name__ == "__main__":
    main()
