"""The candidate's update as a function of candidate inputs, batched over restarts with ``torch.func``.

``CandidateUpdate(view, update)(x, y)`` maps candidate inputs ``x`` of shape ``(R, B, *sample)`` and labels
``y`` (``(B,)`` shared, or ``(R, B)`` / ``(R, B, K)`` per restart) to the update the client would have sent,
as a tuple of tensors ``(R, *param_shape)`` in the order of ``names``. The result is differentiable in ``x``
and ``y`` (double backward through ``torch.func.grad``), so it can be matched to the observed update.

- FedSGD: the gradient of the mean loss.
- FedAvg: the local SGD steps are unrolled differentiably (Dimitrov et al. 2022, "Data Leakage in Federated
  Averaging"): ``theta_{k+1} = theta_k - lr * grad L(theta_k; minibatch_k)``, returning ``theta_K - theta_0``,
  with the client's mini-batch order (consecutive chunks of ``local_batch_size``, cycled).
- Aggregate (``update.num_clients > 1``): the mean of the above over equal consecutive shares of the batch, one per
  client (each with its own BatchNorm statistics and local trajectory).

Speed options (opt-in, off by default; see :func:`accelerate`): ``torch.compile`` of the whole per-restart
update (``functional_call`` + ``grad`` + ``vmap``, ``fullgraph=True``; compiled on first use per process and
shape: 21 s for LeNet, minutes for a ConvNet-64 on 2 CPU cores); ``bfloat16`` autocast of the model's
arithmetic (AMX on recent Xeons, tensor cores on GPUs), with the update returned in the input's dtype;
``tf32`` matrix products and convolutions on CUDA (Ampere and newer); ``channels_last`` memory layout of
images and convolution weights (NHWC, which cuDNN's tensor-core kernels and oneDNN prefer).
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch.func import functional_call, grad, vmap

from ..errors import CapabilityError, ConfigError, DataError
from ..types import Update
from ..view import AttackerView


@dataclass(frozen=True)
class Acceleration:
    """How candidate updates are computed.

    ``compile``: ``torch.compile(fullgraph=True)`` of the update function. ``precision``: ``fp32`` (exact:
    on CUDA cuBLAS and cuDNN are held to IEEE fp32 during the attack, where torch's default lets cuDNN
    convolutions round to TF32 on Ampere and newer), ``tf32`` (CUDA matrix products and convolutions in
    TF32: 10-bit mantissa, fp32 range; no effect on a CPU) or ``bf16`` (autocast of convolutions and matrix
    products). ``channels_last``: images and 4-d weights in NHWC layout (same values, other kernels).
    """

    compile: bool = False
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"
    channels_last: bool = False


def _from_environment() -> Acceleration:
    precision = os.environ.get("GRADLEAK_PRECISION", "fp32").lower()
    if precision not in PRECISIONS:
        raise ConfigError(f"GRADLEAK_PRECISION={precision!r} is not a precision; use one of {', '.join(PRECISIONS)}")
    return Acceleration(compile=_flag("GRADLEAK_COMPILE"), precision=precision,  # type: ignore[arg-type]
                        channels_last=_flag("GRADLEAK_CHANNELS_LAST"))


def _flag(name: str) -> bool:
    value = os.environ.get(name, "0").lower()
    if value not in ("0", "1", "true", "false", "yes", "no", ""):
        raise ConfigError(f"{name}={value!r} is not a switch; use 1 or 0")
    return value in ("1", "true", "yes")


PRECISIONS = ("fp32", "tf32", "bf16")

#: The options set by :func:`accelerate`; ``None``: read ``GRADLEAK_COMPILE``, ``GRADLEAK_PRECISION`` and
#: ``GRADLEAK_CHANNELS_LAST``.
_ACCELERATION: Acceleration | None = None


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` does bfloat16 arithmetic natively (CUDA, or a CPU with AVX512-BF16 or AMX).

    Without it oneDNN refuses bfloat16 convolutions and torch falls back to its reference im2col kernels:
    measured on an AVX2 EPYC, one inverting-gradients evaluation of ResNet-18 took 7.1 s in bf16 against 0.57 s
    in fp32, and a 64-channel convolution's double backward 30x longer.
    """
    if device.type != "cpu":
        return True
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def acceleration() -> Acceleration:
    """The options new ``CandidateUpdate`` objects take."""
    return _ACCELERATION if _ACCELERATION is not None else _from_environment()


def accelerate(compile: bool | None = None, precision: Literal["fp32", "tf32", "bf16"] | None = None,
               channels_last: bool | None = None) -> Acceleration:
    """Set the speed options of candidate updates built from now on; returns the previous ones.

    They change the arithmetic, not the algorithm: ``compile`` and ``channels_last`` reorder float operations
    (float noise), ``tf32`` keeps about 3 significant digits in CUDA products, ``bf16`` runs the model in
    bfloat16 (about 3 significant digits); measure the attack's quality.
    """
    global _ACCELERATION
    previous = acceleration()
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not a precision; use one of {', '.join(PRECISIONS)}")
    _ACCELERATION = Acceleration(compile=previous.compile if compile is None else bool(compile),
                                 precision=previous.precision if precision is None else precision,
                                 channels_last=previous.channels_last if channels_last is None else bool(channels_last))
    return previous


class CandidateUpdate:
    def __init__(self, view: AttackerView, update: Update) -> None:
        model = copy.deepcopy(view.model)
        train = view.model.training
        if train:
            # The client normalised with its own batch statistics; so must every candidate.
            torch.func.replace_all_batch_norm_modules_(model)
        model.train(train)
        options = acceleration()
        self.compiled, self.precision, self.channels_last = options.compile, options.precision, options.channels_last
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.device = view.device
        self.loss = view.loss
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        missing = [n for n in self.names if n not in update.tensors]
        if missing:
            raise DataError(f"the update lacks tensors for parameters {missing[:3]}...; it does not fit this model")
        self.params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        self.frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        self.buffers = {n: b for n, b in model.named_buffers()}
        self.kind = update.kind
        # ``aggregate``: the server sees the mean of ``num_clients`` updates, each on an equal consecutive share.
        self.clients = int(update.num_clients)
        if view.batch_size % self.clients:
            raise DataError(f"a batch of {view.batch_size} cannot be split evenly across {self.clients} clients")
        if update.kind == "delta":
            if update.local_lr is None:
                raise CapabilityError(
                    "attacking a FedAvg delta needs the local hyper-parameters (the 'hyperparams' capability), "
                    "which the threat model withholds; grant it with --set hyperparams=known"
                )
            self.lr = float(update.local_lr)
            self.steps = int(update.local_steps) * int(update.epochs)
            self.local_batch_size = int(update.local_batch_size or update.num_samples)
        self.randomness = "different" if train else "error"
        if self.precision == "tf32" and view.device.type != "cuda":
            warnings.warn(f"precision tf32 applies to CUDA matrix products and convolutions only; on "
                          f"{view.device.type} the update is computed in fp32", RuntimeWarning, stacklevel=2)
        if self.precision == "bf16" and not native_bf16(view.device):
            warnings.warn("precision bf16: this CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX), so "
                          "convolutions take a fallback measured 10-30x slower than fp32; use fp32 here "
                          "(unset GRADLEAK_PRECISION)", RuntimeWarning, stacklevel=2)
        self._fns: dict[tuple[int, bool], Callable[..., tuple[torch.Tensor, ...]]] = {}

    def target(self, update: Update) -> tuple[torch.Tensor, ...]:
        return tuple(update.tensors[n].detach() for n in self.names)

    @contextlib.contextmanager
    def numerics(self) -> Iterator[None]:
        """Hold the arithmetic of the chosen precision for the attack's whole loop, backward passes included.

        On CUDA: cuBLAS and cuDNN in IEEE fp32 (``fp32``, ``bf16``: autocast handles its own ops) or TF32
        (``tf32``), restored afterwards. Elsewhere nothing changes.
        """
        if self.device.type != "cuda":
            yield
            return
        tf32 = self.precision == "tf32"
        matmul = torch.backends.cuda.matmul
        if hasattr(matmul, "fp32_precision"):
            mode = "tf32" if tf32 else "ieee"
            held = [(matmul, "fp32_precision", mode), (torch.backends.cudnn.conv, "fp32_precision", mode)]
        else:  # torch < 2.9: the older flags
            held = [(matmul, "allow_tf32", tf32), (torch.backends.cudnn, "allow_tf32", tf32)]
        before = [getattr(owner, name) for owner, name, _ in held]
        for owner, name, value in held:
            setattr(owner, name, value)
        try:
            yield
        finally:
            for (owner, name, _), value in zip(held, before):
                setattr(owner, name, value)

    def _loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(self.model, (params, self.frozen, self.buffers), (x,))
        return self.loss(out, y)

    def _single(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.clients == 1:
            return self._client(x, y)
        size = x.shape[0] // self.clients
        parts = [self._client(x[c * size:(c + 1) * size], y[c * size:(c + 1) * size]) for c in range(self.clients)]
        return tuple(sum(part[i] for part in parts) / self.clients for i in range(len(self.names)))

    def _client(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.kind == "gradient":
            g = grad(self._loss)(self.params, x, y)
            return tuple(g[n] for n in self.names)
        n = x.shape[0]
        chunks = [(i, min(i + self.local_batch_size, n)) for i in range(0, n, self.local_batch_size)]
        params = dict(self.params)
        for step in range(self.steps):
            a, b = chunks[step % len(chunks)]
            g = grad(self._loss)(params, x[a:b], y[a:b])
            params = {k: params[k] - self.lr * g[k] for k in self.names}
        return tuple(params[k] - self.params[k] for k in self.names)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, per_restart_labels: bool) -> tuple[torch.Tensor, ...]:
        """``y`` has a leading restart dimension iff ``per_restart_labels`` (e.g. DLG's soft labels)."""
        key = (x.shape[0], per_restart_labels)
        fn = self._fns.get(key)
        if fn is None:
            fn = self._fns[key] = self._build(*key)
        if self.channels_last and x.dim() == 5:
            # Each restart's (B, C, H, W) slice in NHWC order: vmap cannot change a layout inside.
            x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        if self.precision != "bf16":
            return fn(x, y)  # fp32 and tf32 differ only in the CUDA flags held by numerics()
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            out = fn(x, y)
        # Match in the caller's precision: only the model's arithmetic runs in bfloat16.
        return tuple(t.to(x.dtype) for t in out)

    def _build(self, restarts: int, per_restart_labels: bool) -> Callable[..., tuple[torch.Tensor, ...]]:
        if restarts == 1:
            # One restart needs no vmap: its batching rules cost more than the work on small models (LeNet:
            # 3x per evaluation) and a few percent on large ones.
            def fn(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
                out = self._single(x[0], y[0] if per_restart_labels else y)
                return tuple(t.unsqueeze(0) for t in out)
        elif self.precision == "bf16":
            # vmap's batch-norm rule rejects bfloat16 inputs with fp32 statistics (torch 2.13), so restarts run
            # one after another under autocast; bfloat16 pays on large models, where batching gains little.
            def fn(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
                outs = [self._single(x[r], y[r] if per_restart_labels else y) for r in range(x.shape[0])]
                return tuple(torch.stack(parts) for parts in zip(*outs))
        else:
            fn = vmap(self._single, in_dims=(0, 0 if per_restart_labels else None), randomness=self.randomness)
        if self.compiled:
            fn = torch.compile(fn, fullgraph=True, dynamic=False)
        return fn
