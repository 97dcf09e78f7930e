"""Hook implementations of gradleak-text: the ``text`` modality, BERT/GPT-2 cases, TAG, LAMP, DAGER, the
``lm-prior``, ROUGE/exactness metrics and the ``gradleak text train-lm`` command."""

from __future__ import annotations

from gradleak import hookimpl

from . import cases, commands, dager, lm, metrics, optimization
from .modality import Text


@hookimpl
def register_modalities(register):
    register(Text)


@hookimpl
def register_cases(register):
    for cls in cases.CASES:
        register(cls)


@hookimpl
def register_attacks(register):
    for cls in (*dager.ATTACKS, *optimization.ATTACKS):
        register(cls)


@hookimpl
def register_metrics(register):
    for cls in metrics.METRICS:
        register(cls)


@hookimpl
def register_priors(register):
    for cls in lm.PRIORS:
        register(cls)


@hookimpl
def register_commands(cli):
    cli.add_command(commands.text)
