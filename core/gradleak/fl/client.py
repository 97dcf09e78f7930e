"""The client: turns a private batch into the update the server observes, under a protocol and defenses."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..errors import DataError
from ..types import Batch, Update
from .protocol import Protocol

if TYPE_CHECKING:
    from ..components import Case, Defense, Modality


def _params(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _step_gradients(
    model: torch.nn.Module, case: Case, batch: Batch, defenses: Sequence[Defense], generator: torch.Generator,
    modality: Modality | None = None,
) -> dict[str, torch.Tensor]:
    params = _params(model)
    train = [d for d in defenses if d.stage == "train"]
    per_sample = [d for d in train if d.per_sample]
    if per_sample:
        out = _per_sample_gradients(model, case, batch, modality, per_sample[0].name)
        for defense in per_sample:  # each reduces per-sample gradients to the batch gradient
            out = defense.apply_step(out, generator)
    else:
        loss = case.loss(case.forward(model, batch), batch.labels)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        out = {n: (g if g is not None else torch.zeros_like(p)).detach() for (n, p), g in zip(params.items(), grads)}
    for defense in train:
        if not defense.per_sample:
            out = defense.apply_step(out, generator)
    return out


def _per_sample_gradients(model: torch.nn.Module, case: Case, batch: Batch, modality: Modality | None,
                          owner: str) -> dict[str, torch.Tensor]:
    """Each sample's gradient, stacked ``(N, *shape)``: one backward pass per sample (any modality, any forward)."""
    if modality is None:
        raise DataError(f"defense '{owner}' needs per-sample gradients, which need the case's modality")
    if model.training and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise DataError(f"defense '{owner}' needs per-sample gradients, but BatchNorm in train mode mixes the "
                        "samples of a batch; use --set mode=eval or a case without BatchNorm")
    params = _params(model)
    rows: list[dict[str, torch.Tensor]] = []
    for i in range(len(batch)):
        one = modality.select(batch, torch.tensor([i], device=batch.device))
        loss = case.loss(case.forward(model, one), one.labels)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        rows.append({n: (g if g is not None else torch.zeros_like(p)).detach() for (n, p), g in zip(params.items(), grads)})
    return {n: torch.stack([r[n] for r in rows]) for n in params}


def local_update(
    model: torch.nn.Module,
    case: Case,
    modality: Modality,
    batch: Batch,
    protocol: Protocol,
    defenses: Sequence[Defense],
    generator: torch.Generator,
    local_steps: int | None = None,
) -> Update:
    """One client's update. ``model`` is the server's; it is copied, never changed."""
    client = copy.deepcopy(model)
    client.train(protocol.mode == "train")
    n = len(batch)
    steps = protocol.local_steps if local_steps is None else local_steps
    if protocol.name == "fedsgd" or (protocol.name == "aggregate" and steps == 1):
        grads = _step_gradients(client, case, batch, defenses, generator, modality)
        return Update(grads, "gradient", num_samples=n, buffers=_buffers(client))
    lbs = protocol.local_batch_size or n
    if lbs > n:
        raise DataError(f"local_batch_size={lbs} is larger than the client's batch of {n}; lower it with --set local_batch_size=N")
    before = {k: v.detach().clone() for k, v in _params(client).items()}
    chunks = [torch.arange(i, min(i + lbs, n), device=batch.device) for i in range(0, n, lbs)]
    step = 0
    for _ in range(protocol.epochs):
        for _ in range(steps):
            mini = modality.select(batch, chunks[step % len(chunks)])
            grads = _step_gradients(client, case, mini, defenses, generator, modality)
            with torch.no_grad():
                for name, p in _params(client).items():
                    p.sub_(protocol.local_lr * grads[name])
            step += 1
    delta = {k: (p.detach() - before[k]) for k, p in _params(client).items()}
    return Update(delta, "delta", num_samples=n, local_steps=steps, local_lr=protocol.local_lr,
                  local_batch_size=lbs, epochs=protocol.epochs, buffers=_buffers(client))


def _buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.detach().clone() for n, b in model.named_buffers()}


def client_update(
    model: torch.nn.Module,
    case: Case,
    modality: Modality,
    batch: Batch,
    defenses: Sequence[Defense],
    generator: torch.Generator,
) -> tuple[Batch, Update, Update]:
    """Run the case's protocol on ``batch`` with ``defenses``.

    Returns ``(trained_on, clean_update, sent_update)``: the batch after data-stage defenses, the update
    before update-stage defenses (for utility costs), and the update the server receives.
    """
    from ..components import ClientContext

    protocol = case.protocol
    for defense in defenses:
        if defense.stage == "data":
            batch = defense.apply_data(batch, generator)
    for defense in defenses:
        if defense.stage == "model":
            model = defense.apply_model(model, ClientContext(model, case, modality, batch), generator)
    context = ClientContext(model, case, modality, batch)
    # Dropout draws from torch's global generator: seed it from the client's own, so that the update depends
    # on ``generator`` alone (the global state is restored afterwards).
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    with torch.random.fork_rng(devices=[generator.device] if generator.device.type == "cuda" else []):
        torch.manual_seed(seed)
        if protocol.name == "aggregate":
            update = _aggregate(model, case, modality, batch, protocol, defenses, generator)
        else:
            update = local_update(model, case, modality, batch, protocol, defenses, generator)
    sent = update
    for defense in defenses:
        if defense.stage == "update":
            sent = defense.apply_update(sent, generator, context)
    return batch, update, sent


def _aggregate(model, case, modality, batch, protocol, defenses, generator) -> Update:
    n, k = len(batch), protocol.clients
    if n % k:
        raise DataError(f"a batch of {n} samples cannot be split evenly across clients={k}; use a multiple of {k}")
    size = n // k
    updates = []
    for c in range(k):
        part = modality.select(batch, torch.arange(c * size, (c + 1) * size, device=batch.device))
        updates.append(local_update(model, case, modality, part, protocol, defenses, generator))
    first = updates[0]
    tensors = {name: sum(u.tensors[name] * u.num_samples for u in updates) / n for name in first.tensors}
    return first.replace(tensors=tensors, num_samples=n, num_clients=k, buffers={})
