"""R-GAP: recursive closed-form gradient inversion, layer by layer from the output to the input."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from gradleak import (Attack, AttackerView, Batch, ConfigError, IncompatibleError, Reconstruction, Update,
                      UsageError, param)

from .exact import images, labels_from_inputs, layer_gradients, leaves

_AFFINE = (nn.Linear, nn.Conv2d)
_ACTS = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Identity)


@dataclass(frozen=True)
class RGAPConfig:
    active_tol: float = param(1e-7, "ReLU: recovered activations above this count as active")
    sigmoid_eps: float = param(1e-7, "sigmoid/tanh outputs are clipped this far from their bounds before inverting")

    def validate(self, owner: str) -> None:
        for key in ("active_tol", "sigmoid_eps"):
            if not 0 < getattr(self, key) < 0.1:
                raise ConfigError(f"{owner}: {key} must be in (0, 0.1), got {getattr(self, key)}")


def _chain(model: nn.Module, view: AttackerView) -> list[tuple[str, nn.Module, nn.Module]]:
    """``(name, affine layer, activation)`` pairs of a feed-forward model, checked against the model itself."""
    who = "attack 'rgap' needs a feed-forward chain of Linear/Conv2d layers with biases, each followed by " \
          "ReLU, LeakyReLU, Sigmoid, Tanh or nothing"
    pairs: list[tuple[str, nn.Module, nn.Module]] = []
    for name, m in leaves(model):
        if isinstance(m, _AFFINE):
            if m.bias is None or (isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros")):
                raise IncompatibleError(f"{who}; layer '{name}' is not one")
            pairs.append((name, m, nn.Identity()))
        elif isinstance(m, _ACTS) and pairs and isinstance(pairs[-1][2], nn.Identity):
            pairs[-1] = (pairs[-1][0], pairs[-1][1], m)
        elif isinstance(m, nn.Flatten) or (isinstance(m, nn.Identity)):
            continue
        else:
            raise IncompatibleError(f"{who}; module '{name}' ({type(m).__name__}) is not one")
    if not pairs:
        raise IncompatibleError(f"{who}; this model has no such layer")
    x = torch.rand((2, *view.sample_shape), generator=view.generator, device=view.generator.device)
    x = x.to(device=view.device, dtype=next(model.parameters()).dtype)
    with torch.no_grad():
        out = _run(pairs, x)
        ref = view.forward(model, x)
    if not (isinstance(ref, torch.Tensor) and ref.shape == out.shape and torch.allclose(out, ref, atol=1e-5, rtol=1e-4)):
        raise IncompatibleError(f"{who}; this model's forward pass is not such a chain")
    return pairs


def _run(pairs, x: torch.Tensor) -> torch.Tensor:
    for _, layer, act in pairs:
        if isinstance(layer, nn.Linear):
            x = x.flatten(1)
        x = act(layer(x))
    return x


class RGAP(Attack):
    """R-GAP: recursive gradient attack on privacy, closed form from the last layer down to the input.

    Zhu, Blaschko, "R-GAP: Recursive Gradient Attack on Privacy", ICLR 2021. For layer i with input x_i and
    pre-activation z_i = A_i x_i + c_i (a convolution is the linear map A_i, the paper's circulant matrix),
    two linear systems constrain x_i: the weight gradient dW_i = M(dz_i) x_i (for a linear layer
    dz_i x_i^T) and, below the top, A_i x_i = sigma^{-1}(x_{i+1}) - c_i. R-GAP solves them jointly by least
    squares, then passes dz_{i-1} = sigma'(z_{i-1}) * A_i^T dz_i down. The recursion starts from the last
    layer's bias gradient (dz_L = dL/db_L for one sample). ReLU rows whose output is zero carry no equation
    (their pre-activation is unknown). Batch 1 (the paper's setting); float64 on a copy of the model.
    Applies to feed-forward Linear/Conv2d chains with biases: ``vision/mlp`` and ``vision/lenet``.
    """

    name = "rgap"
    modalities = frozenset({"image"})
    Config = RGAPConfig
    paper = "Zhu and Blaschko, R-GAP: Recursive Gradient Attack on Privacy, ICLR 2021"

    def reconstruct(self, update: Update, view: AttackerView, budget: int | None = None) -> Reconstruction:
        if view.batch_size != 1:
            raise UsageError(f"attack 'rgap' reconstructs one image per update (R-GAP's setting), got a batch of "
                             f"{view.batch_size}; use --batch-size 1")
        model = copy.deepcopy(view.model).double()
        pairs = _chain(model, view)
        shapes = self._input_shapes(pairs, view)
        grads = [layer_gradients(update, name) for name, _, _ in pairs]
        dz = grads[-1][1]  # dL/dz_L = dL/db_L for one sample
        x = None
        for i in range(len(pairs) - 1, -1, -1):
            name, layer, _ = pairs[i]
            dW, _ = grads[i]
            A, c = self._affine(layer, shapes[i])
            rows, z = (self._preactivation(pairs[i][2], x) if x is not None  # x: the input of layer i + 1
                       else (torch.zeros(0, dtype=torch.long, device=dz.device), dz.new_zeros(0)))
            if isinstance(layer, nn.Linear):
                x_i = _solve_linear(A[rows], z - c[rows], dz.reshape(-1), dW)
            else:
                Mtw, MtM = self._gradient_system(layer, shapes[i], dz.reshape(-1), dW)
                lhs = MtM + A[rows].T @ A[rows]
                rhs = Mtw + A[rows].T @ (z - c[rows])
                x_i = torch.linalg.lstsq(lhs, rhs[:, None]).solution.flatten()
            if i > 0:
                act = pairs[i - 1][2]
                z_prev = self._inverse_all(act, x_i)
                back = A.T @ dz.reshape(-1)
                dz = self._derivative(act, z_prev, x_i) * back
            x = x_i
        data = images(x[None], view)
        labels = labels_from_inputs(view, update, data)
        return Reconstruction(Batch(data, labels, "image"), info={"layers": [p[0] for p in pairs]})

    @staticmethod
    def _input_shapes(pairs, view: AttackerView) -> list[tuple[int, ...]]:
        shapes = []
        x = torch.zeros((1, *view.sample_shape), dtype=torch.float64, device=view.device)
        with torch.no_grad():
            for _, layer, act in pairs:
                if isinstance(layer, nn.Linear):
                    x = x.flatten(1)
                shapes.append(tuple(x.shape[1:]))
                x = act(layer(x))
        return shapes

    @staticmethod
    def _affine(layer: nn.Module, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The matrix A and offset c of ``z = A x + c`` on flattened inputs of ``shape``."""
        if isinstance(layer, nn.Linear):
            return layer.weight.detach(), layer.bias.detach()
        zero = torch.zeros((1, *shape), dtype=torch.float64, device=layer.weight.device)
        with torch.no_grad():
            c = layer(zero).flatten()
        A = torch.func.jacrev(lambda v: layer(v.reshape(1, *shape)).flatten())(zero.flatten())
        return A.detach(), c

    @staticmethod
    def _gradient_system(layer: nn.Module, shape: tuple[int, ...], dz: torch.Tensor, dW: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """``M^T w`` and ``M^T M`` of the weight-gradient equations ``M(dz) x = vec(dW)``."""
        n = math.prod(shape)
        if isinstance(layer, nn.Linear):
            eye = torch.eye(n, dtype=dz.dtype, device=dz.device)
            return dW.T @ dz, dz.pow(2).sum() * eye
        weight = layer.weight.detach()

        def grad_w(x: torch.Tensor) -> torch.Tensor:
            def inner(w: torch.Tensor) -> torch.Tensor:
                out = nn.functional.conv2d(x.reshape(1, *shape), w, None, layer.stride, layer.padding, layer.dilation)
                return (out.flatten() * dz).sum()
            return torch.func.grad(inner)(weight).flatten()

        M = torch.func.jacrev(grad_w)(torch.zeros(n, dtype=dz.dtype, device=dz.device))
        return M.T @ dW.flatten(), M.T @ M

    def _preactivation(self, act: nn.Module, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows where the activation can be inverted, and the pre-activations there."""
        if isinstance(act, nn.ReLU):
            rows = (out > self.config.active_tol).nonzero().flatten()
            return rows, out[rows]
        rows = torch.arange(len(out), device=out.device)
        return rows, self._inverse_all(act, out)

    def _inverse_all(self, act: nn.Module, out: torch.Tensor) -> torch.Tensor:
        eps = self.config.sigmoid_eps
        if isinstance(act, nn.Sigmoid):
            p = out.clamp(eps, 1 - eps)
            return torch.log(p) - torch.log1p(-p)
        if isinstance(act, nn.Tanh):
            return torch.atanh(out.clamp(-1 + eps, 1 - eps))
        if isinstance(act, nn.LeakyReLU):
            return torch.where(out >= 0, out, out / act.negative_slope)
        return out  # ReLU (only its positive part is used) and Identity

    def _derivative(self, act: nn.Module, z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if isinstance(act, nn.ReLU):
            return (out > self.config.active_tol).to(z.dtype)
        if isinstance(act, nn.LeakyReLU):
            return torch.where(z >= 0, torch.ones_like(z), torch.full_like(z, act.negative_slope))
        if isinstance(act, nn.Sigmoid):
            s = torch.sigmoid(z)
            return s * (1 - s)
        if isinstance(act, nn.Tanh):
            return 1 - torch.tanh(z).pow(2)
        return torch.ones_like(z)


def _solve_linear(A: torch.Tensor, r: torch.Tensor, dz: torch.Tensor, dW: torch.Tensor) -> torch.Tensor:
    """argmin_x ||A x - r||^2 + ||dz x^T - dW||^2 for a linear layer: (s I + A^T A) x = dW^T dz + A^T r with
    s = ||dz||^2, solved through the k x k system of Woodbury's identity (k = rows of A, often << fan_in)."""
    s = float(dz.pow(2).sum())
    rhs = dW.T @ dz + A.T @ r
    if s == 0:
        return torch.linalg.lstsq(A, r[:, None]).solution.flatten()
    if len(A) == 0:
        return rhs / s
    inner = s * torch.eye(len(A), dtype=A.dtype, device=A.device) + A @ A.T
    return (rhs - A.T @ torch.linalg.solve(inner, A @ rhs)) / s
