"""Hook implementations of gradleak-text: the ``text`` modality, BERT/GPT-2 cases, TAG, LAMP, DAGER, the
``lm-prior``, ROUGE/exactness metrics and the ``gradleak text train-lm`` command."""

from __future__ import annotations

from gradleak import hookimpl, register_all

from . import cases, commands, dager, lm, metrics, optimization
from .modality import Text


@hookimpl
def register_modalities(register):
    register(Text)


@hookimpl
def register_cases(register):
    register_all(register, cases.CASES)


@hookimpl
def register_attacks(register):
    register_all(register, dager.ATTACKS, optimization.ATTACKS)


@hookimpl
def register_metrics(register):
    register_all(register, metrics.METRICS)


@hookimpl
def register_priors(register):
    register_all(register, lm.PRIORS)


@hookimpl
def register_commands(cli):
    cli.add_command(commands.text)
