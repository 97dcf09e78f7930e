"""Galleries: every run's reconstruction beside the truth, in the form its modality saved.

The core knows artifact *formats*, not modalities: pictures a modality drew (``*.png``: image grids, graph
drawings, trajectory plots, spike rasters) are embedded; lists of strings (``truth.json``/``recon.json`` of
text) are shown as word diffs; anything else is linked.
"""

from __future__ import annotations

import base64
import difflib
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_IMAGE_BYTES = 4 * 2**20
MAX_TEXT_ITEMS = 16


@dataclass(frozen=True)
class GalleryItem:
    title: str
    subtitle: str
    images: list[tuple[str, str]] = field(default_factory=list)  # (name, base64 png)
    diffs: list[str] = field(default_factory=list)  # HTML fragments
    links: list[tuple[str, str]] = field(default_factory=list)  # (name, relative path)


def _resolve(study_dir: Path, key: str, path: str) -> Path | None:
    """Find an artifact: under the study's ``artifacts/<key>/`` first (the study may have moved), else as stored."""
    local = study_dir / "artifacts" / key / Path(path).name
    if local.is_file():
        return local
    stored = Path(path)
    return stored if stored.is_file() else None


def word_diff(truth: str, recon: str) -> str:
    """HTML of ``recon`` against ``truth``: missing truth words struck through, wrong words marked."""
    a, b = truth.split(), recon.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html.escape(" ".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append(f"<del>{html.escape(' '.join(a[i1:i2]))}</del>")
        if j2 > j1:
            out.append(f"<ins>{html.escape(' '.join(b[j1:j2]))}</ins>")
    return " ".join(out)


def _string_list(path: Path) -> list[str] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def gallery_item(study_dir: Path, row: dict[str, Any]) -> GalleryItem | None:
    artifacts: dict[str, str] = row.get("artifacts") or {}
    if not artifacts:
        return None
    metrics = row.get("metrics") or {}
    shown = ", ".join(f"{k} {v:.3g}" for k, v in list(metrics.items())[:4] if isinstance(v, (int, float)))
    item = GalleryItem(title=f"{row['case_name']} / {row['attack']} / {row['defense']}",
                       subtitle=f"seed {row['seed']}" + (f": {shown}" if shown else ""))
    files = {name: _resolve(study_dir, row["key"], path) for name, path in artifacts.items()}
    for name, path in files.items():
        if path is None:
            continue
        if path.suffix.lower() == ".png" and path.stat().st_size <= MAX_IMAGE_BYTES:
            item.images.append((name, base64.b64encode(path.read_bytes()).decode()))
    truth, recon = files.get("truth"), files.get("recon")
    if truth is not None and recon is not None and truth.suffix == ".json":
        t, r = _string_list(truth), _string_list(recon)
        if t is not None and r is not None:
            item.diffs.extend(word_diff(a, b) for a, b in list(zip(t, r))[:MAX_TEXT_ITEMS])
    for name, path in files.items():
        if path is not None and path.suffix.lower() != ".png":
            try:
                rel = path.resolve().relative_to(study_dir.resolve())
            except ValueError:
                rel = path.resolve()
            item.links.append((name, str(rel)))
    return item


def gallery(study_dir: Path, rows: list[dict[str, Any]], limit: int = 60) -> list[GalleryItem]:
    """One item per (case, attack, defense), from its lowest seed's run, at most ``limit``."""
    chosen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        ident = (row["case_name"], row["attack"], row["defense"])
        if ident not in chosen or row["seed"] < chosen[ident]["seed"]:
            chosen[ident] = row
    items = []
    for ident in sorted(chosen)[:limit]:
        item = gallery_item(study_dir, chosen[ident])
        if item is not None:
            items.append(item)
    return items
