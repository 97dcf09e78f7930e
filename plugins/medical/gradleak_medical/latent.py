"""Learnable latent perturbation (Jiang, Firouzi, Chakrabarty): noise in the code, trained by minimax.

The client's network is an encoder E and a classifier C. The defended client computes its update through

    z = E(x),   z~ = z + sigma * eps,   eps ~ N(0, I),   logits = C(z~)

with a per-dimension noise scale sigma learned against a decoder D (the attacker's proxy, reconstructing x
from z~), by alternating

    max_D  -|| D(z~) - x ||^2                               (D learns to reconstruct)
    min_sigma  CE(C(z~), y) - lambda * || D(z~) - x ||^2     (sigma hides x while keeping the task)

on the client's own data. ``privacy`` is lambda, the knob trading utility for privacy.

Joint training. The paper optimises E, C, sigma and D together over training. In federated learning E and C
are trained by the server from the clients' updates (computed through the noisy code), so the client's share
of the joint training is to keep sigma and D matched to the current E and C: on the first model it receives
it runs ``steps`` minimax steps from ``sigma0`` and a fresh decoder; on every later model it continues the
same minimax for ``round_steps`` steps, warm-started from its previous sigma, decoder and both Adam states
(so the cost per round stays bounded and sigma follows the encoder's code as training moves it).
``round_steps=0`` keeps the sigma learned on the first model for the whole run (the earlier "learn-once"
variant, kept for comparison: sigma learned on a random initialisation need not suit the trained encoder).

What we chose where the paper (no official code) is unclear:
- E and C stay the weights the server sent; only sigma (and D) are learned locally, and the update is the
  gradient of the task loss through the noisy code. The reconstruction term of the paper's objective is
  not added to E's gradient: the server's update would then carry a term the attack's model does not know,
  which would conflate the defense with a gradient mismatch.
- sigma is absolute (in the code's units), as in ``z + sigma * eps``, not relative to the code's spread:
  re-learning it every round is what keeps it in scale with the code (the case's code ends in a sigmoid, so
  its values stay in (0, 1); ``utility_cost`` reports the code's spread ``latent_std`` beside ``sigma_mean``).
- sigma is parameterised as ``exp(log_sigma)`` (positive) and is not sent to the server (it is the client's
  private state), so the server's update has exactly the undefended model's tensors. The noise is fresh at
  every forward pass, including the local steps whose update the server receives.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gradleak import Batch, ClientContext, ConfigError, Defense, IncompatibleError, Update, param

from .models import EncoderClassifier


@dataclass(frozen=True)
class LatentPerturbationConfig:
    privacy: float = param(10.0, "lambda: weight of the decoder's reconstruction error in sigma's objective")
    sigma0: float = param(0.1, "initial noise scale of every latent dimension")
    steps: int = param(200, "alternating minimax steps on the first model received (one decoder and one sigma step each)")
    round_steps: int = param(5, "minimax steps on each later model received, warm-started (0: keep the first sigma)")
    lr: float = param(0.05, "Adam step size of log sigma (the decoder uses 1e-3)")
    batch: int = param(32, "samples per minimax step, drawn from the client's data")

    def validate(self, owner: str) -> None:
        if self.privacy < 0 or self.sigma0 <= 0 or self.lr <= 0:
            raise ConfigError(f"{owner}: privacy must be >= 0, sigma0 and lr > 0")
        if self.steps < 0 or self.round_steps < 0 or self.batch < 1:
            raise ConfigError(f"{owner}: steps and round_steps must be >= 0 and batch >= 1")


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
        self.rounds = 0  # models received, each with its minimax steps
        self._data: Batch | None = None
        self._log_sigma: torch.Tensor | None = None
        self._decoder: nn.Module | None = None
        self._opt_d: torch.optim.Optimizer | None = None
        self._opt_s: torch.optim.Optimizer | None = None

    def apply_model(self, model: torch.nn.Module, context: ClientContext, generator: torch.Generator) -> torch.nn.Module:
        if not isinstance(model, EncoderClassifier):
            raise IncompatibleError(f"defense '{self.name}' needs a model split into encoder and head "
                                    "(gradleak_medical.models.EncoderClassifier), as the medical cases build")
        steps = self.config.steps if self.sigma is None else self.config.round_steps
        if self.sigma is None or steps > 0:
            self.sigma = self._learn(model, context, generator, steps)
            self.rounds += 1
        return PerturbedClassifier(copy.deepcopy(model), self.sigma)

    def _start(self, latent: int, shape: tuple[int, ...], device: torch.device) -> None:
        """sigma at ``sigma0``, a fresh decoder, and their optimizers (the state later rounds continue)."""
        self._log_sigma = torch.full((latent,), float(torch.log(torch.tensor(self.config.sigma0))), device=device,
                                     requires_grad=True)
        self._decoder = _decoder(latent, shape).to(device)
        self._opt_d = torch.optim.Adam(self._decoder.parameters(), lr=1e-3)
        self._opt_s = torch.optim.Adam([self._log_sigma], lr=self.config.lr)

    def _learn(self, model: EncoderClassifier, context: ClientContext, generator: torch.Generator,
               steps: int) -> torch.Tensor:
        c = self.config
        if self._data is None:  # the client's own data, loaded once
            self._data = context.case.load_data(None).to(context.batch.device)
        data = self._data
        frozen = copy.deepcopy(model).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator, device=generator.device)))
            if self._log_sigma is None:
                with torch.no_grad():
                    latent = frozen.encoder(data.data[:1]).shape[1]
                self._start(latent, tuple(data.data.shape[1:]), data.data.device)
            log_sigma, decoder = self._log_sigma, self._decoder
            for _ in range(steps):
                idx = torch.randint(0, len(data), (min(c.batch, len(data)),), device=data.data.device)
                x, y = data.data[idx], data.labels[idx]
                with torch.no_grad():
                    z = frozen.encoder(x)
                noisy = z + log_sigma.exp() * torch.randn_like(z)
                rec_loss = F.mse_loss(decoder(noisy.detach()), x)
                self._opt_d.zero_grad()
                rec_loss.backward()
                self._opt_d.step()
                noisy = z + log_sigma.exp() * torch.randn_like(z)
                task = F.cross_entropy(frozen.head(noisy), y)
                leak = F.mse_loss(decoder(noisy), x)
                self._opt_s.zero_grad()
                (task - c.privacy * leak).backward()
                self._opt_s.step()
                self.history.append((float(task.detach()), float(leak.detach())))
            del self.history[:-200]  # bounded over long federations; the last steps are what is reported
        return log_sigma.detach().exp()

    def utility_cost(self, clean: Update, defended: Update, context: ClientContext | None = None) -> dict[str, float]:
        cost = super().utility_cost(clean, defended, context)
        if self.sigma is not None:
            cost["sigma_mean"] = float(self.sigma.mean())
            cost["rounds"] = float(self.rounds)
        if self.history:
            cost["decoder_mse"] = sum(h[1] for h in self.history[-20:]) / len(self.history[-20:])
        if context is not None and self.sigma is not None and isinstance(context.model, EncoderClassifier):
            if self._data is not None:
                cost["latent_std"] = latent_std(context.model, self._data)
            public = context.case.public_data()
            if public is not None:
                cost["accuracy"] = accuracy(PerturbedClassifier(copy.deepcopy(context.model), self.sigma), public)
                cost["accuracy_clean"] = accuracy(context.model, public)
        return cost


def latent_std(model: EncoderClassifier, batch: Batch) -> float:
    """Mean over code dimensions of the code's standard deviation across ``batch``: the scale sigma competes with."""
    with torch.no_grad():
        z = model.encoder(batch.data.to(next(model.parameters()).device))
    return float(z.std(0).mean())


def accuracy(model: torch.nn.Module, batch) -> float:
    """Top-1 accuracy of ``model`` on a labelled image batch (eval mode; the noise of a perturbed model stays)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        correct = (model(batch.data.to(next(model.parameters()).device)).argmax(1).cpu() == batch.labels.cpu())
    model.train(was)
    return float(correct.float().mean())
