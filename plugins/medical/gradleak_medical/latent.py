"""Learnable latent perturbation (Jiang, Firouzi, Chakrabarty): noise in the code, trained by minimax.

The client's network is an encoder E and a classifier C. The defended client computes its update through

    z = E(x),   z~ = z + sigma * eps,   eps ~ N(0, I),   logits = C(z~)

with a per-dimension noise scale sigma learned against a decoder D (the attacker's proxy, reconstructing x
from z~), by alternating

    max_D  -|| D(z~) - x ||^2                               (D learns to reconstruct)
    min_sigma  CE(C(z~), y) - lambda * || D(z~) - x ||^2     (sigma hides x while keeping the task)

on the client's own data. ``privacy`` is lambda, the knob trading utility for privacy.

What we chose where the paper (no official code) is unclear: E and C stay the weights the server sent, and
only sigma (and D) are learned here, because this simulation attacks one round: learning E jointly is what
the minimax does across the rounds of a real federation, and changing E locally before the round would
conflate the defense with a change of weights. sigma is parameterised as ``exp(log_sigma)`` (positive),
starts at ``sigma0``, and is not sent to the server (it is the client's private state), so the server's
update has exactly the undefended model's tensors. The noise is fresh at every forward pass, including the
local steps whose update the server receives.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gradleak import ClientContext, ConfigError, Defense, IncompatibleError, Update, param

from .models import EncoderClassifier


@dataclass(frozen=True)
class LatentPerturbationConfig:
    privacy: float = param(10.0, "lambda: weight of the decoder's reconstruction error in sigma's objective")
    sigma0: float = param(0.1, "initial noise scale of every latent dimension")
    steps: int = param(200, "alternating minimax steps (one decoder step and one sigma step each)")
    lr: float = param(0.05, "Adam step size of log sigma (the decoder uses 1e-3)")
    batch: int = param(32, "samples per minimax step, drawn from the client's data")

    def validate(self, owner: str) -> None:
        if self.privacy < 0 or self.sigma0 <= 0 or self.lr <= 0:
            raise ConfigError(f"{owner}: privacy must be >= 0, sigma0 and lr > 0")
        if self.steps < 0 or self.batch < 1:
            raise ConfigError(f"{owner}: steps must be >= 0 and batch >= 1")


class PerturbedClassifier(EncoderClassifier):
    """``head(encoder(x) + sigma * eps)``: the parameters (and their names) of the undefended model, plus the
    client's private noise scale as a buffer (never part of an update)."""

    def __init__(self, model: EncoderClassifier, sigma: torch.Tensor) -> None:
        super().__init__(model.encoder, model.head)
        self.register_buffer("sigma", sigma.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        return self.head(z + self.sigma * torch.randn_like(z))


def _decoder(latent: int, shape: tuple[int, ...]) -> nn.Module:
    out = 1
    for d in shape:
        out *= d
    return nn.Sequential(nn.Linear(latent, 256), nn.ReLU(), nn.Linear(256, out), nn.Sigmoid(), nn.Unflatten(1, shape))


class LatentPerturbation(Defense):
    """Learnable Gaussian noise in the latent code, trained by minimax against a decoder (the attacker's proxy)."""

    name = "latent-perturbation"
    stage = "model"
    modalities = frozenset({"image"})
    Config = LatentPerturbationConfig
    paper = ("Jiang, Firouzi, Chakrabarty: Defending Against Gradient Inversion Attacks for Biomedical Images "
             "via Learnable Data Perturbation")

    def __init__(self, config=None, device="cpu") -> None:
        super().__init__(config, device)
        self.sigma: torch.Tensor | None = None
        self.history: list[tuple[float, float]] = []  # (classification loss, decoder error) per step

    def apply_model(self, model: torch.nn.Module, context: ClientContext, generator: torch.Generator) -> torch.nn.Module:
        if not isinstance(model, EncoderClassifier):
            raise IncompatibleError(f"defense '{self.name}' needs a model split into encoder and head "
                                    "(gradleak_medical.models.EncoderClassifier), as the medical cases build")
        if self.sigma is None:  # learned once per run, on the client's data, from the first model received
            self.sigma = self._learn(model, context, generator)
        return PerturbedClassifier(copy.deepcopy(model), self.sigma)

    def _learn(self, model: EncoderClassifier, context: ClientContext, generator: torch.Generator) -> torch.Tensor:
        c = self.config
        data = context.case.load_data(None).to(context.batch.device)
        frozen = copy.deepcopy(model).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            latent = frozen.encoder(data.data[:1]).shape[1]
        log_sigma = torch.full((latent,), float(torch.log(torch.tensor(c.sigma0))), device=data.data.device,
                               requires_grad=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator, device=generator.device)))
            decoder = _decoder(latent, tuple(data.data.shape[1:])).to(data.data.device)
            opt_d = torch.optim.Adam(decoder.parameters(), lr=1e-3)
            opt_s = torch.optim.Adam([log_sigma], lr=c.lr)
            for _ in range(c.steps):
                idx = torch.randint(0, len(data), (min(c.batch, len(data)),), device=data.data.device)
                x, y = data.data[idx], data.labels[idx]
                with torch.no_grad():
                    z = frozen.encoder(x)
                noisy = z + log_sigma.exp() * torch.randn_like(z)
                rec_loss = F.mse_loss(decoder(noisy.detach()), x)
                opt_d.zero_grad()
                rec_loss.backward()
                opt_d.step()
                noisy = z + log_sigma.exp() * torch.randn_like(z)
                task = F.cross_entropy(frozen.head(noisy), y)
                leak = F.mse_loss(decoder(noisy), x)
                opt_s.zero_grad()
                (task - c.privacy * leak).backward()
                opt_s.step()
                self.history.append((float(task.detach()), float(leak.detach())))
        return log_sigma.detach().exp()

    def utility_cost(self, clean: Update, defended: Update, context: ClientContext | None = None) -> dict[str, float]:
        cost = super().utility_cost(clean, defended, context)
        if self.sigma is not None:
            cost["sigma_mean"] = float(self.sigma.mean())
        if self.history:
            cost["decoder_mse"] = sum(h[1] for h in self.history[-20:]) / len(self.history[-20:])
        if context is not None and self.sigma is not None and isinstance(context.model, EncoderClassifier):
            public = context.case.public_data()
            if public is not None:
                cost["accuracy"] = accuracy(PerturbedClassifier(copy.deepcopy(context.model), self.sigma), public)
                cost["accuracy_clean"] = accuracy(context.model, public)
        return cost


def accuracy(model: torch.nn.Module, batch) -> float:
    """Top-1 accuracy of ``model`` on a labelled image batch (eval mode; the noise of a perturbed model stays)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        correct = (model(batch.data.to(next(model.parameters()).device)).argmax(1).cpu() == batch.labels.cpu())
    model.train(was)
    return float(correct.float().mean())
