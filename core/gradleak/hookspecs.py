"""Hook specifications: the whole contract between gradleak and its plugins.

A plugin is a module named by an entry point in the ``gradleak`` group of its distribution::

    [project.entry-points.gradleak]
    myplugin = "gradleak_myplugin.plugin"

The entry-point name (``myplugin``) is the plugin's name: it qualifies the names of what the plugin
registers (``myplugin/my-attack``). The module implements any of the hooks below, each decorated with
``@gradleak.hookimpl``. gradleak's own plugins (vision, graph, rl, snn, text, medical) and its built-in
generic components use exactly these hooks; there is no other way in.

When hooks are called
---------------------
Never at ``import gradleak``. The first time anything asks the registry (the CLI, :func:`gradleak.registry`,
:func:`gradleak.run`), gradleak loads each entry point on its own: a plugin that raises on import is
listed as *broken* (or *unavailable* when the error is a missing optional package) with its error, and the
rest keep working. Then every registration hook of every loaded plugin is called once, in the order the
plugins were loaded. ``register_commands`` is called when the CLI starts.

The ``register`` callable
-------------------------
Every ``register_*`` hook receives ``register``: call it once per component *class* (not instance). It
checks the class (a subclass of the right base from :mod:`gradleak`, a ``name`` of the right style:
kebab-case, snake_case for metrics; a ``Config`` dataclass; known capability names) and records which
plugin registered it. A class that fails these checks makes the plugin *broken*, with the reason.
``gradleak.register_all(register, *lists)`` calls it on every class of those lists, in order.

Two plugins may register the same bare name (``psnr`` in vision and medical): both stay reachable by their
qualified names (``vision/psnr``), and a bare lookup picks the one that applies to the case's modality. Only
a bare name that stays ambiguous is an error, which lists the qualified names.

Knobs (environment variables)
-----------------------------
``GRADLEAK_DISABLE_PLUGINS=a,b`` never loads those plugins; ``GRADLEAK_LOAD_PLUGINS=a,b`` loads only those
(the built-in plugin is always loaded); ``GRADLEAK_STRICT_PLUGINS=1`` re-raises any plugin error with its
traceback (for plugin authors and CI).

Example
-------
::

    import gradleak
    from gradleak import Attack, hookimpl

    class Zeros(Attack):
        \"\"\"A baseline that guesses all zeros.\"\"\"
        name = "zeros"
        modalities = frozenset({"image"})

        def reconstruct(self, update, view, budget=None):
            x = torch.zeros(view.batch_size, *view.sample_shape, device=view.device)
            return gradleak.Reconstruction(view.modality.search_space(view).to_batch(x, None))

    @hookimpl
    def register_attacks(register):
        register(Zeros)

Check a plugin with ``gradleak.testing.check_plugin("myplugin")`` in its own tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from .components import Attack, Case, Defense, Detector, Metric, Modality, Prior

hookspec = pluggy.HookspecMarker("gradleak")
hookimpl = pluggy.HookimplMarker("gradleak")


@hookspec
def register_modalities(register: Callable[[type[Modality]], None]) -> None:
    """Register data kinds (subclasses of :class:`gradleak.Modality`).

    A modality's ``name`` is the data kind (``"image"``, ``"graph"``, ``"text"``, ``"transition"``,
    ``"spikes"``) that cases, attacks, priors, metrics and defenses refer to in their ``modalities``. It
    supplies the continuous search space of generic optimization attacks (``search_space``), how
    reconstructed samples are matched to the truth (``pairwise_cost``, then minimum-cost assignment), how
    batches are sliced, joined and saved in plain formats, its ``default_metrics``, ``primary_metric``, and its
    success criterion (``is_success`` plus ``success_criterion`` in words). Two plugins may not register the
    same modality name.

    :param register: ``register(ModalityClass)``.
    """


@hookspec
def register_cases(register: Callable[[type[Case]], None]) -> None:
    """Register cases (subclasses of :class:`gradleak.Case`): what is attacked.

    A case bundles a model (``build_model(generator)``), its loss (``loss(outputs, labels)``), a private data
    source (``load_data(path)``: the offline built-in data when ``path`` is None, else the user's ``--data``),
    and, through its ``Config`` (a subclass of :class:`gradleak.CaseConfig`), the FL protocol and the threat
    model, both settable with ``--set``. Users name cases ``<plugin>/<name>`` (``vision/lenet``).

    :param register: ``register(CaseClass)``.
    """


@hookspec
def register_attacks(register: Callable[[type[Attack]], None]) -> None:
    """Register attacks (subclasses of :class:`gradleak.Attack`).

    An attack declares the data kinds it applies to (``modalities``; ``None`` for all), the capabilities it
    needs (``requires``, a subset of ``labels``, ``bn_stats``, ``hyperparams``, ``surrogate``,
    ``modify_model``), and implements ``reconstruct(update, view, budget) -> Reconstruction``. A run whose
    threat model lacks a required capability is refused before it starts. Active attacks (``active = True``)
    also implement ``prepare(model, view)``. Optimization attacks should build on the engine in
    :mod:`gradleak.engine` rather than write their own loop.

    :param register: ``register(AttackClass)``.
    """


@hookspec
def register_priors(register: Callable[[type[Prior]], None]) -> None:
    """Register priors (subclasses of :class:`gradleak.Prior`): differentiable penalties on candidates.

    ``penalty(inputs, view)`` gets decoded candidates ``(restarts, batch, *sample_shape)`` and returns one
    value per restart. Optimization attacks take a list of priors with weights.

    :param register: ``register(PriorClass)``.
    """


@hookspec
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Register leakage metrics (subclasses of :class:`gradleak.Metric`); names are snake_case.

    ``metric(recon, truth)`` returns one value per sample after the runner has matched reconstructed samples
    to the true ones; ``higher_is_better`` orients tables and success rates.

    :param register: ``register(MetricClass)``.
    """


@hookspec
def register_defenses(register: Callable[[type[Defense]], None]) -> None:
    """Register defenses (subclasses of :class:`gradleak.Defense`).

    ``stage`` is ``"data"`` (transform the private batch), ``"update"`` (transform the update) or
    ``"train"`` (transform every local step's gradient); ``utility_cost`` reports what it costs. Users set
    a defense's ``Config`` fields with ``--defense name:key=value,...``.

    :param register: ``register(DefenseClass)``.
    """


@hookspec
def register_detectors(register: Callable[[type[Detector]], None]) -> None:
    """Register detectors (subclasses of :class:`gradleak.Detector`): client-side checks that score a
    received model (or training dynamics) for signs of an active attack.

    :param register: ``register(DetectorClass)``.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``gradleak`` command line (``@cli.command()`` or ``cli.add_command``).

    Called once when the CLI starts, after the built-in commands exist; a name clash with a built-in command
    makes the plugin broken.

    :param cli: the root ``click.Group``.
    """
