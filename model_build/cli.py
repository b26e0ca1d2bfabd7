"""The ``sarco`` command line (workstation).

Each sub-command lives in its own module under ``model_build.commands`` and registers itself
through ``register(app)``, so adding a command never means editing a shared file beyond the
list below.
"""

from model_build.commands import (
    criteria,
    deidentify,
    evaluate,
    export,
    federated,
    label,
    measure,
    predict,
    pretrain,
    readme,
    repeat,
    sign,
    study,
    synth,
    train,
    tune,
    validate,
)
from sarco_core.cli import command_group

app = command_group("sarco", "Sarcopenia screening from muscle ultrasound: cohorts, criteria, synthetic data.")

for command_module in (synth, validate, criteria, label, train, evaluate, predict, export, deidentify, sign, study,
                       tune, measure, readme, repeat, federated, pretrain):
    command_module.register(app)
