"""Studies: grids of cases x attacks x defenses x seeds, run into a results store, resumable.

    study = gradleak.Study.from_toml("examples/cross_modality.toml")
    frame = study.run(out="results/cross", workers=2)      # a pandas DataFrame, one row per run

The CLI's ``gradleak study`` is this class. See :mod:`gradleak.study.spec` for the file format and
:mod:`gradleak.study.store` for the results store.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .execute import execute_one, run_all
from .spec import RunSpec, Skipped, StudyError, StudySpec, load_study, parse_study
from .store import ResultStore

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["ResultStore", "RunSpec", "Skipped", "Study", "StudyError", "StudySpec", "execute_one", "load_study",
           "parse_study"]


class Study:
    """A validated study: its runs and the grid cells skipped as incompatible (with reasons)."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec

    @classmethod
    def from_toml(cls, path: str | Path, reg: Any = None) -> Study:
        """Read and validate a study file; every problem is reported at once (:class:`StudyError`)."""
        return cls(load_study(path, reg))

    @classmethod
    def from_text(cls, text: str, reg: Any = None) -> Study:
        return cls(parse_study(text, "<study>", reg))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def runs(self) -> tuple[RunSpec, ...]:
        return self.spec.runs

    @property
    def skipped(self) -> tuple[Skipped, ...]:
        return self.spec.skipped

    def run(self, out: str | Path | None = None, workers: int = 1, backend: str = "local",
            address: str | None = None, resume: bool = False, progress: bool | None = None) -> pd.DataFrame:
        """Run every run not yet finished in ``out`` and return all results as a DataFrame.

        ``out`` defaults to ``results/<study name>``. A directory that already holds results of this study is
        refused unless ``resume`` (which skips finished keys and reruns the rest). ``progress``: a bar with ETA
        over the whole study (default: when stderr is a terminal).
        """
        if workers < 1:
            raise UsageError(f"--workers must be >= 1, got {workers}")
        if backend not in ("local", "ray"):
            raise UsageError(f"--backend {backend!r}: choose local or ray")
        if address is not None and backend != "ray":
            raise UsageError("--address names a Ray cluster; add --backend ray")
        directory = Path(out) if out is not None else Path("results") / self.name
        if directory.exists() and not directory.is_dir():
            raise UsageError(f"--out {directory}: is a file, not a folder; choose a folder for the study")
        with ResultStore(directory) as store:
            done = store.finished_keys()
            ours = {s.key for s in self.runs} | {s.spec.key for s in self.skipped}
            if done & ours and not resume:
                raise UsageError(f"--out {directory} already holds {len(done & ours)} finished run(s) of this study; "
                                 "pass --resume to continue it, or choose another --out")
            modality = _modalities()
            for sk in self.skipped:
                if sk.spec.key not in done:
                    store.record_skipped(self.name, sk.spec.as_dict(), modality(sk.spec.case), sk.reason)
            todo = [s.as_dict() for s in self.runs if s.key not in done]
            if resume and done & ours:
                log.info("resuming: %d of %d runs already finished", len(done & ours), len(ours))
            self._execute(store, todo, workers, backend, address, modality, progress)
            return store.frame()

    def _execute(self, store: ResultStore, todo: list[dict[str, Any]], workers: int, backend: str,
                 address: str | None, modality: Any, progress: bool | None) -> None:
        from tqdm.auto import tqdm

        show = sys.stderr.isatty() if progress is None else progress
        bar = tqdm(total=len(todo), desc=self.name, unit="run", disable=not show)
        failed = 0
        try:
            for spec, outcome in run_all(todo, str(store.artifacts_dir), workers, backend, address):
                if outcome is None:
                    store.mark_running(self.name, spec, modality(spec["case"]))
                    continue
                store.record(self.name, spec, modality(spec["case"]), outcome)
                if outcome["status"] == "failed":
                    failed += 1
                    log.warning("run %s failed: %s", spec["key"], str(outcome.get("error", "")).splitlines()[0])
                bar.update(1)
                bar.set_postfix(failed=failed, refresh=False)
        finally:
            bar.close()

    def dry_run(self) -> list[dict[str, Any]]:
        """The expanded grid: every run and every skip with its reason (``gradleak study --dry-run``)."""
        rows = [{"key": s.key, "case": s.case, "attack": s.attack, "defense": s.defense_label, "seed": s.seed,
                 "status": "run", "reason": "", "origin": s.origin} for s in self.runs]
        rows += [{"key": k.spec.key, "case": k.spec.case, "attack": k.spec.attack, "defense": k.spec.defense_label,
                  "seed": k.spec.seed, "status": "skip", "reason": k.reason, "origin": k.spec.origin}
                 for k in self.skipped]
        return rows


def _modalities() -> Any:
    """``case name -> modality name`` (None when the case's plugin is not available here)."""
    from ..registry import registry

    reg = registry()
    cache: dict[str, str | None] = {}

    def lookup(case: str) -> str | None:
        if case not in cache:
            try:
                cache[case] = reg.get("case", case).modality
            except UsageError:
                cache[case] = None
        return cache[case]

    return lookup
