"""Study files: read a TOML study, expand its grids, and validate every run before anything runs.

Schema (DESIGN.md)::

    [study]
    name = "cross-modality"
    seeds = [0, 1]              # default [0]
    device = "auto"             # defaults for every run: defense, device, budget, batch_size, batches, data, set
    budget = 200

    [[grid]]                    # case, attack, defense and seeds may be lists: the grid is their product
    case = ["vision/lenet", "snn/lif-cnn-digits"]
    attack = ["dlg", "inverting-gradients"]
    defense = ["none", "prune:ratio=0.9", ["prune:ratio=0.5", "dp-gaussian:sigma=0.01"]]  # a list = stacked
    set = { labels = "known" }  # case and attack parameters for every run of this grid
    attack_set = { inverting-gradients = { tv = 0.01 } }   # parameters for one attack only

    [[run]]                     # one run, scalar values
    case = "graph/gcn-molecules"
    attack = "grain"

Validation collects every problem (unknown names, wrong types, bad values, missing data) and raises one
:class:`StudyError` listing them all with their line in the file. Inside a ``[[grid]]``, a cell whose
attack or defense does not apply to the case (wrong data kind, or a capability the threat model withholds)
is *skipped* with the reason, since grids cross everything with everything; in a ``[[run]]`` it is an error.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CapabilityError, IncompatibleError, UsageError

#: Keys a ``[[grid]]`` or ``[[run]]`` block accepts; the first four may be lists in a grid.
LIST_KEYS = ("case", "attack", "defense", "seeds")
SCALAR_KEYS = ("seed", "device", "budget", "batch_size", "batches", "data", "set", "attack_set")
STUDY_KEYS = ("name", "seeds", "defense", "device", "budget", "batch_size", "batches", "data", "set", "attack_set")


class StudyError(UsageError):
    """A study file with problems; the message lists every problem, one a line, with its line number."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a study, fully specified. ``key`` identifies it in the results store (not the device)."""

    case: str
    attack: str
    defenses: tuple[str, ...]
    seed: int
    sets: tuple[tuple[str, Any], ...] = ()
    budget: int | None = None
    batch_size: int | None = None
    batches: int | None = None
    data: str | None = None
    device: str = "auto"
    origin: str = field(default="", compare=False)

    @property
    def key(self) -> str:
        ident = {"case": self.case, "attack": self.attack, "defenses": list(self.defenses), "seed": self.seed,
                 "sets": [list(kv) for kv in self.sets], "budget": self.budget, "batch_size": self.batch_size,
                 "batches": self.batches, "data": self.data}
        digest = hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{self.case.replace('/', '.')}-{self.attack}-s{self.seed}-{digest}"

    @property
    def defense_label(self) -> str:
        return "+".join(self.defenses)

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`gradleak.run` (without ``out``)."""
        return {"case": self.case, "attack": self.attack, "defenses": list(self.defenses), "seed": self.seed,
                "sets": dict(self.sets), "budget": self.budget, "batch_size": self.batch_size,
                "batches": self.batches, "data": self.data, "device": self.device}

    def as_dict(self) -> dict[str, Any]:
        return {**self.run_kwargs(), "key": self.key, "origin": self.origin}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSpec:
        return cls(case=d["case"], attack=d["attack"], defenses=tuple(d["defenses"]), seed=int(d["seed"]),
                   sets=tuple(sorted(dict(d.get("sets") or {}).items())), budget=d.get("budget"),
                   batch_size=d.get("batch_size"), batches=d.get("batches"), data=d.get("data"),
                   device=d.get("device", "auto"), origin=d.get("origin", ""))


@dataclass(frozen=True)
class Skipped:
    """A grid cell that cannot run (incompatible), recorded with its reason."""

    spec: RunSpec
    reason: str


@dataclass(frozen=True)
class StudySpec:
    name: str
    path: Path | None
    runs: tuple[RunSpec, ...]
    skipped: tuple[Skipped, ...]


# ----------------------------------------------------------------------------------------------------- parsing


class _Lines:
    """Line numbers of blocks and keys in the raw TOML text, for error messages (tomllib gives none)."""

    def __init__(self, text: str) -> None:
        self.blocks: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int], dict[str, int]] = {}
        counters = {"grid": 0, "run": 0}
        current: tuple[str, int] = ("study", 0)
        for n, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            header = re.fullmatch(r"\[\[\s*(grid|run)\s*\]\]\s*(#.*)?", stripped)
            if header:
                kind = header.group(1)
                counters[kind] += 1
                current = (kind, counters[kind])
                self.blocks[current] = n
                continue
            if re.fullmatch(r"\[\s*study\s*\]\s*(#.*)?", stripped):
                current = ("study", 0)
                self.blocks[current] = n
                continue
            match = re.match(r"([A-Za-z0-9_\-]+)\s*=", stripped)
            if match:
                self.keys.setdefault(current, {}).setdefault(match.group(1), n)

    def of(self, block: tuple[str, int], key: str | None = None) -> int | None:
        if key is not None and key in self.keys.get(block, {}):
            return self.keys[block][key]
        return self.blocks.get(block)


class _Problems:
    def __init__(self, path: str, lines: _Lines) -> None:
        self.path, self.lines, self.items = path, lines, []  # type: ignore[var-annotated]

    def add(self, block: tuple[str, int], key: str | None, message: str) -> None:
        line = self.lines.of(block, key)
        where = f"{self.path}:{line}" if line else self.path
        label = "[study]" if block[0] == "study" else f"[[{block[0]}]] #{block[1]}"
        entry = f"{where}: {label}: {message}"
        if entry not in self.items:
            self.items.append(entry)

    def raise_if_any(self) -> None:
        if self.items:
            head = f"{self.path}: {len(self.items)} problem(s); nothing was run:"
            raise StudyError("\n  ".join([head, *self.items]))


def load_study(path: str | Path, reg: Any = None) -> StudySpec:
    """Read and validate a study file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyError(f"study file {path}: not found; pass the path of a .toml study file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(f"study file {path}: cannot be read ({exc}); pass a UTF-8 .toml file") from None
    return parse_study(text, str(path), reg)


def parse_study(text: str, source: str = "<study>", reg: Any = None) -> StudySpec:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"{source}: not valid TOML ({exc}); fix the syntax at that position") from None
    lines = _Lines(text)
    problems = _Problems(source, lines)
    unknown_top = sorted(set(doc) - {"study", "grid", "run"})
    for key in unknown_top:
        problems.add(("study", 0), key, f"unknown section or key '{key}'; a study has [study], [[grid]] and [[run]]")
    study = doc.get("study", {})
    if not isinstance(study, dict):
        problems.add(("study", 0), None, "[study] must be a table")
        study = {}
    for key in sorted(set(study) - set(STUDY_KEYS)):
        problems.add(("study", 0), key, f"unknown key '{key}'; [study] accepts {', '.join(STUDY_KEYS)}")
    name = study.get("name", Path(source).stem if source != "<study>" else "study")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        problems.add(("study", 0), "name", f"name {name!r} must be letters, digits, '.', '_' or '-'")
        name = "study"
    defaults = {k: study[k] for k in STUDY_KEYS if k in study and k != "name"}
    grids, runs = doc.get("grid", []), doc.get("run", [])
    if not isinstance(grids, list) or not isinstance(runs, list):
        problems.add(("study", 0), None, "write [[grid]] and [[run]] (double brackets): each is a list of blocks")
        grids, runs = [], []
    if not grids and not runs:
        problems.add(("study", 0), None, "the study has no [[grid]] or [[run]] block; add one")
    cells: list[tuple[tuple[str, int], RunSpec]] = []
    for kind, blocks in (("grid", grids), ("run", runs)):
        for i, block in enumerate(blocks, start=1):
            cells.extend(((kind, i), s) for s in _expand(kind, (kind, i), block, defaults, problems))
    kept, skipped = _validate(cells, problems, reg)
    problems.raise_if_any()
    return StudySpec(name=name, path=Path(source) if source != "<study>" else None, runs=tuple(kept),
                     skipped=tuple(skipped))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _expand(kind: str, block_id: tuple[str, int], block: Any, defaults: Mapping[str, Any],
            problems: _Problems) -> list[RunSpec]:
    if not isinstance(block, dict):
        problems.add(block_id, None, f"[[{kind}]] must be a table of keys")
        return []
    for key in sorted(set(block) - set(LIST_KEYS) - set(SCALAR_KEYS)):
        valid = ", ".join(LIST_KEYS + SCALAR_KEYS)
        problems.add(block_id, key, f"unknown key '{key}'; valid keys are {valid}")
    for key in ("case", "attack"):
        if key not in block:
            problems.add(block_id, None, f"missing '{key}'")
    if "case" not in block or "attack" not in block:
        return []
    merged = {**defaults, **{k: v for k, v in block.items() if k in SCALAR_KEYS or k in LIST_KEYS}}
    for key in SCALAR_KEYS:
        if key in merged and isinstance(merged[key], list):
            problems.add(block_id, key, f"'{key}' must be a single value, not a list (only {', '.join(LIST_KEYS)} expand)")
            return []
    if kind == "run":
        for key in ("case", "attack"):
            if isinstance(block[key], list):
                problems.add(block_id, key, f"'{key}' must be one value in a [[run]]; use a [[grid]] for lists")
                return []
    if "seed" in block and "seeds" in block:
        problems.add(block_id, "seed", "give either 'seed' or 'seeds', not both")
        return []
    seeds = [block["seed"]] if "seed" in block else _as_list(merged.get("seeds", [0]))
    typed = _typed_scalars(block_id, merged, problems)
    for key in ("case", "attack"):
        for value in _as_list(block[key]):
            if not isinstance(value, str) or not value:
                problems.add(block_id, key, f"'{key}' values must be names (strings), got {value!r}")
                return []
    defenses = []
    for value in _as_list(block.get("defense", merged.get("defense", "none"))):
        stack = tuple(value) if isinstance(value, list) else (value,)
        if not stack or not all(isinstance(d, str) and d for d in stack):
            problems.add(block_id, "defense", f"a defense is a string like 'prune:ratio=0.9' (or a list of them), got {value!r}")
            return []
        defenses.append(stack)
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**32:
            problems.add(block_id, "seeds" if "seeds" in block else "seed", f"seeds are integers in [0, 2^32), got {s!r}")
            return []
    if typed is None:
        return []
    out = []
    attack_set = typed.pop("attack_set")
    base_sets = typed.pop("set")
    for case, attack, stack, seed in itertools.product(_as_list(block["case"]), _as_list(block["attack"]), defenses, seeds):
        sets = {**base_sets, **attack_set.get(attack, {})}
        out.append(RunSpec(case=case, attack=attack, defenses=stack, seed=int(seed),
                           sets=tuple(sorted(sets.items())), origin=f"{kind} {block_id[1]}", **typed))
    return out


def _typed_scalars(block_id: tuple[str, int], merged: Mapping[str, Any], problems: _Problems) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    ok = True
    for key in ("budget", "batch_size", "batches"):
        value = merged.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.add(block_id, key, f"'{key}' must be a positive integer, got {value!r}")
            ok = False
        out[key] = value
    for key in ("data", "device"):
        value = merged.get(key)
        if value is not None and not isinstance(value, str):
            problems.add(block_id, key, f"'{key}' must be a string, got {value!r}")
            ok = False
        out[key] = value
    out["device"] = out["device"] or "auto"
    sets = merged.get("set", {})
    if not isinstance(sets, dict):
        problems.add(block_id, "set", "'set' must be a table, e.g. set = { labels = \"known\" }")
        ok = False
        sets = {}
    attack_set = merged.get("attack_set", {})
    if not isinstance(attack_set, dict) or not all(isinstance(v, dict) for v in attack_set.values()):
        problems.add(block_id, "attack_set", "'attack_set' maps attack names to tables, e.g. { dlg = { lr = 0.5 } }")
        ok = False
        attack_set = {}
    if "budget" in sets and out["budget"] is None:
        out["budget"] = sets.pop("budget")
    out["set"], out["attack_set"] = dict(sets), attack_set
    return out if ok else None


# -------------------------------------------------------------------------------------------------- validation


def _validate(cells: Sequence[tuple[tuple[str, int], RunSpec]], problems: _Problems,
              reg: Any) -> tuple[list[RunSpec], list[Skipped]]:
    """Plan every cell (names, types, ranges, capabilities) without compute; sort into runs and skips."""
    from ..device import resolve_device
    from ..registry import registry
    from ..runner import plan

    reg = reg or registry()
    kept: list[RunSpec] = []
    skipped: list[Skipped] = []
    checked: dict[tuple[Any, ...], str | None] = {}
    seen: set[str] = set()
    devices: set[str] = set()
    for block, spec in cells:
        if spec.device not in devices:  # each distinct device is resolved once
            devices.add(spec.device)
            try:
                resolve_device(spec.device)
            except UsageError as exc:
                problems.add(block, "device", str(exc))
        ident = (spec.case, spec.attack, spec.defenses, spec.sets, spec.budget)
        if ident not in checked:
            checked[ident] = None
            try:
                p = plan(spec.case, spec.attack, spec.defenses, dict(spec.sets), device="cpu", budget=spec.budget, reg=reg)
                if spec.data is not None and p.case.data_is_path and not Path(spec.data).exists():
                    problems.add(block, "data", f"data {spec.data!r}: no such file or directory")
            except (IncompatibleError, CapabilityError) as exc:
                if block[0] == "run":
                    problems.add(block, "attack", str(exc))
                else:
                    checked[ident] = str(exc)
            except UsageError as exc:
                problems.add(block, _blame(str(exc), spec), str(exc))
        reason = checked[ident]
        if spec.key in seen:
            continue  # the same run listed twice (overlapping grids) runs once
        seen.add(spec.key)
        if reason is not None:
            skipped.append(Skipped(spec, reason))
        else:
            kept.append(spec)
    return kept, skipped


def _blame(message: str, spec: RunSpec) -> str | None:
    """Which key of the block an error message is about (for its line number)."""
    from ..runner import parse_component

    defenses = []
    for d in spec.defenses:
        try:
            defenses.append(parse_component(d)[0])
        except UsageError:
            return "defense"
    if any(message.startswith((f"{d}:", f"{d} has")) for d in defenses) or "defense" in message.lower():
        return "defense"
    if "--set" in message or any(message.startswith((f"{o}:", f"{o} has")) for o in (spec.case, spec.attack)):
        return "set"
    lowered = message.lower()
    for key in ("case", "attack"):
        if key in lowered:
            return key
    return None
