"""A defended client inside a federation: FedSGD training with the defense in the loop, then one attacked update.

The latent-perturbation paper evaluates a model trained *with* its defense (encoder and classifier learn
through the noisy code, sigma and the decoder follow them), then attacks that model's updates. A single
simulated round (``gradleak run``) attacks a model that never trained with the noise, which measures the
defense's privacy but not the utility it keeps. These two functions are that protocol, shared by the
benchmark (``benchmarks/medical/curves.py``) and the tests.
"""

from __future__ import annotations

import torch

from gradleak import Batch, Reconstruction, Update
from gradleak.device import generator as make_generator
from gradleak.fl.client import client_update
from gradleak.runner import Plan
from gradleak.view import AttackerView


def train_fedsgd(plan: Plan, model: torch.nn.Module, data: Batch, rounds: int, batch_size: int, lr: float,
                 generator: torch.Generator, seed: int) -> None:
    """Train ``model`` in place: ``rounds`` FedSGD rounds over ``data`` in a fixed shuffled order.

    Each round's update is computed by :func:`client_update` under the plan's defenses (so a model-stage
    defense trains through its perturbation and a train-stage one clips and noises per example) and applied by
    the server with Adam at ``lr``.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    for r in range(rounds):
        picks = order[torch.arange(r * batch_size, (r + 1) * batch_size) % len(data)]
        _, _, sent = client_update(model, plan.case, plan.modality, plan.modality.select(data, picks),
                                   plan.defenses, generator)
        opt.zero_grad()
        for name, param in model.named_parameters():
            param.grad = sent.tensors[name].detach().clone()
        opt.step()


def attack_update(plan: Plan, model: torch.nn.Module, truth: Batch, generator: torch.Generator,
                  iterations: int, attack_seed: int) -> tuple[Update, Reconstruction]:
    """The defended update of ``truth`` on ``model`` and the plan's attack on it (labels as the threat model says).

    The attack draws from its own generator seeded with ``attack_seed``, so every defense is attacked from the
    same start.
    """
    view = AttackerView.granted(plan.case, plan.modality, model, batch_size=len(truth),
                                sample_shape=tuple(truth.data.shape[1:]),
                                generator=make_generator(generator.device, attack_seed), labels=truth.labels)
    _, _, sent = client_update(model, plan.case, plan.modality, truth, plan.defenses, generator)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(attack_seed)
        return sent, plan.attack.reconstruct(sent, view, iterations)
