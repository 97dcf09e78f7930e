"""The results store: one SQLite file per study directory, one row per run, written transactionally.

``DIR/results.sqlite``, table ``runs``. A run is inserted as ``running`` when it starts and replaced by its
final row (``ok``, ``failed`` or ``skipped``) in one transaction when it ends, so killing the process at any
moment loses at most the runs in flight: every finished row is on disk (WAL journal, synchronous FULL), and
``--resume`` reruns exactly the keys that are not finished. Artifacts live in ``DIR/artifacts/<key>/``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

FINISHED = ("ok", "failed", "skipped")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    study TEXT NOT NULL,
    case_name TEXT NOT NULL,
    modality TEXT,
    attack TEXT NOT NULL,
    defense TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    spec TEXT NOT NULL,
    params TEXT,
    metrics TEXT,
    per_sample TEXT,
    utility TEXT,
    success_rate REAL,
    failed_samples INTEGER,
    seconds REAL,
    peak_mem_mb REAL,
    device TEXT,
    error TEXT,
    artifacts TEXT,
    versions TEXT,
    started REAL,
    finished REAL
)
"""

_JSON_COLUMNS = ("spec", "params", "metrics", "per_sample", "utility", "artifacts", "versions")


class ResultStore:
    """Read and write ``DIR/results.sqlite``. Every write is its own transaction."""

    FILENAME = "results.sqlite"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--out {self.directory}: cannot create this folder ({exc.strerror or exc}); "
                             "choose a writable one") from None
        self.path = self.directory / self.FILENAME
        # Callers serialise writes (one driver thread, or a lock); Flower calls the strategy from its own thread.
        self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(_SCHEMA)

    @property
    def artifacts_dir(self) -> Path:
        return self.directory / "artifacts"

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ writing

    def _write(self, row: Mapping[str, Any]) -> None:
        values = {k: (json.dumps(v, default=str) if k in _JSON_COLUMNS and v is not None else v)
                  for k, v in row.items()}
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._conn:  # one transaction: the row is either fully there or not at all
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({marks})", list(values.values()))

    def mark_running(self, study: str, spec: Mapping[str, Any], modality: str | None) -> None:
        self._write(_base(study, spec, modality) | {"status": "running", "started": time.time()})

    def record(self, study: str, spec: Mapping[str, Any], modality: str | None, outcome: Mapping[str, Any]) -> None:
        """Store a finished run; ``outcome`` holds ``status`` and the fields of :func:`execute_one`'s result."""
        row = _base(study, spec, modality)
        row.update({k: outcome.get(k) for k in ("status", "params", "metrics", "per_sample", "utility", "success_rate",
                                                "failed_samples", "seconds", "peak_mem_mb", "device", "error",
                                                "artifacts", "versions", "started")})
        row["finished"] = time.time()
        self._write(row)

    def record_skipped(self, study: str, spec: Mapping[str, Any], modality: str | None, reason: str) -> None:
        self._write(_base(study, spec, modality) | {"status": "skipped", "error": reason, "finished": time.time()})

    # ------------------------------------------------------------------------------------------ reading

    def finished_keys(self) -> set[str]:
        marks = ", ".join("?" for _ in FINISHED)
        cur = self._conn.execute(f"SELECT key FROM runs WHERE status IN ({marks})", FINISHED)
        return {r[0] for r in cur}

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def rows(self, statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM runs", []
        if statuses is not None:
            statuses = list(statuses)
            query += f" WHERE status IN ({', '.join('?' for _ in statuses)})"
            args = statuses
        out = []
        for r in self._conn.execute(query + " ORDER BY rowid", args):
            d = dict(r)
            for k in _JSON_COLUMNS:
                if d.get(k) is not None:
                    d[k] = json.loads(d[k])
            out.append(d)
        return out

    def frame(self) -> pd.DataFrame:
        """One row per run: identity, status, cost, every metric as a column, utility costs as ``utility.<k>``."""
        import pandas as pd

        records = []
        for r in self.rows():
            rec = {k: r[k] for k in ("key", "study", "modality", "attack", "defense", "seed", "status", "seconds",
                                     "peak_mem_mb", "success_rate", "failed_samples", "device", "error")}
            rec["case"] = r["case_name"]
            rec.update(r.get("metrics") or {})
            rec.update({f"utility.{k}": v for k, v in (r.get("utility") or {}).items()})
            records.append(rec)
        front = ["key", "study", "case", "modality", "attack", "defense", "seed", "status"]
        df = pd.DataFrame.from_records(records)
        if df.empty:
            return pd.DataFrame(columns=front)
        return df[front + [c for c in df.columns if c not in front]]


def _base(study: str, spec: Mapping[str, Any], modality: str | None) -> dict[str, Any]:
    return {"key": spec["key"], "study": study, "case_name": spec["case"], "modality": modality,
            "attack": spec["attack"], "defense": "+".join(spec["defenses"]), "seed": spec["seed"],
            "spec": dict(spec)}
