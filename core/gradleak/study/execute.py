"""Running a study's runs: in this process, in a local process pool, or on a Ray cluster.

Whatever the backend, one run is :func:`execute_one` (a plain function of picklable arguments), and only the
driver writes to the results store, as each run finishes. A run that raises is recorded as ``failed`` with its
error and the study goes on.

- ``local`` with ``workers=1``: runs one after another in this process (simplest to debug).
- ``local`` with ``workers=N>1``: a pool of N spawned processes, each running one run and exiting
  (``max_tasks_per_child=1``), so memory is returned after every run and a crash takes down one run only;
  torch in each gets ``cores // N`` threads.
- ``ray``: one Ray task per run (``num_cpus=1``) on the local runtime or the cluster at ``address``; the
  study directory must be on storage the workers share for artifacts to land there.
"""

from __future__ import annotations

import logging
import os
import resource
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

log = logging.getLogger(__name__)

Outcome = dict[str, Any]


def execute_one(spec: dict[str, Any], artifacts_dir: str, threads: int | None = None) -> Outcome:
    """Run one study run (``spec`` from :meth:`RunSpec.as_dict`); never raises: failures become an outcome."""
    import torch

    from .. import __version__
    from ..errors import UsageError
    from ..runner import run

    if threads:
        torch.set_num_threads(threads)
    started = time.time()
    kwargs = {k: spec[k] for k in ("case", "attack", "defenses", "seed", "sets", "budget", "batch_size", "batches",
                                   "data", "device")}
    cuda = str(spec.get("device", "auto")) != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    base: Outcome = {"started": started, "versions": _versions(__version__)}
    try:
        result = run(out=os.path.join(artifacts_dir, spec["key"]), **kwargs)
    except UsageError as exc:
        return base | {"status": "failed", "error": str(exc), "seconds": time.time() - started,
                       "peak_mem_mb": _peak_mb(cuda)}
    except Exception as exc:  # a bug or a numerical failure in one run must not stop the study
        tail = "".join(traceback.format_exception(exc)[-3:]).strip()
        return base | {"status": "failed", "error": f"{type(exc).__name__}: {exc}\n{tail}",
                       "seconds": time.time() - started, "peak_mem_mb": _peak_mb(cuda)}
    doc = result.as_json()
    return base | {"status": "ok", "metrics": doc["metrics"], "per_sample": doc["per_sample"],
                   "utility": doc["utility"], "params": doc["params"], "success_rate": doc["success_rate"],
                   "failed_samples": doc["failed"], "seconds": doc["seconds"], "device": doc["device"],
                   "artifacts": doc["artifacts"], "peak_mem_mb": _peak_mb(cuda)}


def _peak_mb(cuda: bool) -> float:
    """Peak memory of this run: CUDA's peak allocation on GPU, else this process's peak resident set size.

    In-process (``workers=1``) the resident peak is the process's so far, an upper bound for the run.
    """
    if cuda:
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _versions(version: str) -> dict[str, str]:
    import torch

    from ..registry import registry

    out = {"gradleak": version, "torch": torch.__version__}
    for info in registry().plugins():
        if info.status == "ok":
            out[info.distribution or info.name] = info.version
    return out


def run_all(specs: Sequence[dict[str, Any]], artifacts_dir: str, workers: int = 1, backend: str = "local",
            address: str | None = None) -> Iterator[tuple[dict[str, Any], Outcome | None]]:
    """Yield ``(spec, None)`` when a run starts and ``(spec, outcome)`` when it ends, in completion order."""
    if backend == "ray":
        yield from _ray(specs, artifacts_dir, workers, address)
    elif workers <= 1:
        for spec in specs:
            yield spec, None
            yield spec, execute_one(spec, artifacts_dir)
    else:
        yield from _pool(specs, artifacts_dir, workers)


def _pool(specs: Sequence[dict[str, Any]], artifacts_dir: str, workers: int) -> Iterator[tuple[dict[str, Any], Outcome | None]]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and CUDA state
    pending: dict[Any, dict[str, Any]] = {}
    queue = list(specs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1) as pool:
        try:
            while queue or pending:
                while queue and len(pending) < workers:
                    spec = queue.pop(0)
                    pending[pool.submit(execute_one, spec, artifacts_dir, threads)] = spec
                    yield spec, None
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    spec = pending.pop(fut)
                    yield spec, _result_of(fut.result)
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def _ray(specs: Sequence[dict[str, Any]], artifacts_dir: str, workers: int,
         address: str | None) -> Iterator[tuple[dict[str, Any], Outcome | None]]:
    from ..optional import import_optional

    ray = import_optional("ray", "gradleak[ray]", "--backend ray")
    started_here = not ray.is_initialized()
    if started_here:
        init: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": False,
                                "ignore_reinit_error": True}
        if address is None:
            init["num_cpus"] = max(1, workers)
        ray.init(**init)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(execute_one)
        pending = {}
        for spec in specs:
            pending[remote.remote(spec, artifacts_dir, 1)] = spec
        for spec in pending.values():
            yield spec, None
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                spec = pending.pop(ref)
                yield spec, _result_of(lambda ref=ref: ray.get(ref))
    finally:
        if started_here:
            ray.shutdown()


def _result_of(get: Callable[[], Outcome]) -> Outcome:
    """The outcome of a worker, or a failed outcome when the worker itself died (out of memory, segfault)."""
    try:
        return get()
    except Exception as exc:
        return {"status": "failed", "error": f"the worker running this run died: {type(exc).__name__}: {exc}"}
