"""Run the official GRAIN attack (insait-institute/GRAIN) on a CPU, without editing its files.

GRAIN's code sends every tensor and model to CUDA by hand (99 call sites in 15 files; ``--device cpu`` is ignored
at ``src/attack.py:214``), and two of its building-block constructors only convert graphs to tensors when
``torch.cuda.is_available()`` (``building_block.py:360``, ``extended_bb.py:91``). This wrapper redirects those
calls to the CPU at run time, reports CUDA as available so the conversions happen, and runs ``src/attack.py``
as ``__main__``. Run it from a GRAIN checkout with the stubs of ``stubs/`` on ``PYTHONPATH`` (GRAIN imports
``neptune`` unconditionally and loads molecules from the Hugging Face hub; the ``datasets`` stub reads the
CSV named by ``GRAIN_SMILES_CSV`` instead)::

    cd GRAIN && GRAIN_SMILES_CSV=/path/mols.csv PYTHONPATH=/path/to/benchmarks/peers/official/stubs \\
        python /path/to/benchmarks/peers/official/grain_cpu.py --dataset zpn/tox21_srp53 --device cpu \\
        --n_inputs 4 --config_path /path/to/benchmarks/peers/official/grain_gcn.yaml

It needs ``tabulate`` (``pip install tabulate``) beside torch, rdkit, pandas, networkx and scipy.
"""

from __future__ import annotations

import functools
import os
import runpy
import sys

import torch


def _cpu(device):
    if isinstance(device, str) and device.startswith("cuda"):
        return "cpu"
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    return device


def _on_cpu(factory):
    @functools.wraps(factory)
    def call(*args, **kwargs):
        if "device" in kwargs:
            kwargs["device"] = _cpu(kwargs["device"])
        return factory(*args, **kwargs)
    return call


def install() -> None:
    """Point every CUDA placement GRAIN makes at the CPU."""
    tensor_to, module_to, generator = torch.Tensor.to, torch.nn.Module.to, torch.Generator
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.Tensor.to = lambda self, *a, **k: tensor_to(self, *map(_cpu, a), **{n: _cpu(v) for n, v in k.items()})
    torch.nn.Module.to = lambda self, *a, **k: module_to(self, *map(_cpu, a), **{n: _cpu(v) for n, v in k.items()})
    for name in ("eye", "ones", "zeros", "full", "tensor", "randn", "rand", "randint", "arange", "empty",
                 "zeros_like", "ones_like", "full_like", "as_tensor"):
        setattr(torch, name, _on_cpu(getattr(torch, name)))
    torch.Generator = lambda device="cpu": generator(device=_cpu(device))
    # building_block.py and extended_bb.py convert graphs to tensors only when CUDA is "available".
    torch.cuda.is_available = lambda: True


if __name__ == "__main__":
    install()
    src = os.path.join(os.getcwd(), "src")
    sys.path.insert(0, src)
    sys.argv = [os.path.join(src, "attack.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
