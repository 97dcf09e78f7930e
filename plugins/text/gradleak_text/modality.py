"""The ``text`` modality: token-id batches (:class:`gradleak_text.data.TextData`) scored by ROUGE and exactness."""

from __future__ import annotations

import difflib
import html
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from gradleak import Batch, Modality

from .data import TextData, pack
from .metrics import rouge_scores

#: A sentence counts as leaked from this ROUGE-1 F-score on.
SUCCESS_ROUGE1 = 0.9


class Text(Modality):
    """Sentences as token ids plus attention mask; scored by ROUGE-1/2/L, token accuracy and exact recovery.

    Reconstructions are matched to the truth by minimum total ``1 - ROUGE-1`` (Hungarian), saved as
    ``truth.json``/``recon.json`` (lists of decoded strings) and drawn as ``diff.html`` (word diff per
    sentence). A sentence is a success at ROUGE-1 >= 0.9. Text has no generic continuous search space: TAG
    and LAMP optimise embeddings themselves.
    """

    name = "text"
    primary_metric = "rouge1"
    default_metrics = ("rouge1", "rouge2", "rouge_l", "token_acc", "exact")
    success_criterion = f"ROUGE-1 >= {SUCCESS_ROUGE1:g}"

    def is_success(self, metrics: Mapping[str, float]) -> bool:
        return float(metrics["rouge1"]) >= SUCCESS_ROUGE1

    def pairwise_cost(self, recon: Batch, truth: Batch) -> torch.Tensor:
        """``cost[i, j] = 1 - ROUGE-1 F(recon_i, truth_j)``."""
        rec, ref = recon.data.texts(), truth.data.texts()
        cost = torch.tensor([[1.0 - rouge_scores(r, t)["rouge1"] for t in ref] for r in rec], dtype=torch.float64)
        return cost.reshape(len(rec), len(ref))

    def select(self, batch: Batch, index: torch.Tensor) -> Batch:
        d: TextData = batch.data
        index = index.to(d.ids.device)
        mask = d.mask[index]
        # Drop padding columns no selected sample needs: an update must not depend on the others' lengths.
        length = max(int(mask.sum(1).max()) if len(mask) else 1, 1)
        data = TextData(d.ids[index, :length], mask[:, :length], d.tokenizer, d.style, d.pad_id)
        labels = batch.labels_at(index)
        return batch.replace(data=data, labels=labels)

    def concat(self, batches: list[Batch]) -> Batch:
        first: TextData = batches[0].data
        seqs = [s for b in batches for s in b.data.sequences()]
        data = pack(seqs, first.tokenizer, first.style, first.pad_id, first.ids.device)
        return Batch(data, Batch.joined_labels(batches), "text")

    def save(self, batch: Batch, directory: Path, stem: str) -> dict[str, str]:
        path = directory / f"{stem}.json"
        path.write_text(json.dumps(batch.data.texts(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return {stem: str(path)}

    def save_pictures(self, truth: Batch, recon: Batch, directory: Path) -> dict[str, str]:
        """``diff.html``: each true sentence above its reconstruction, missing words red, wrong words amber."""
        rows = []
        for t, r in zip(truth.data.texts(), recon.data.texts()):
            a, b = t.split(), r.split()
            ref, rec = [], []
            for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
                left, right = html.escape(" ".join(a[i1:i2])), html.escape(" ".join(b[j1:j2]))
                if op == "equal":
                    ref.append(left)
                    rec.append(right)
                else:
                    if left:
                        ref.append(f'<del>{left}</del>')
                    if right:
                        rec.append(f'<ins>{right}</ins>')
            rows.append(f"<tr><td>{' '.join(ref)}</td></tr><tr class=r><td>{' '.join(rec)}</td></tr>")
        page = ("<!doctype html><meta charset=utf-8><title>text reconstruction</title><style>"
                "body{font:14px sans-serif}td{padding:2px 6px}tr.r td{padding-bottom:10px;color:#333}"
                "del{background:#fdd;text-decoration:none}ins{background:#fe9;text-decoration:none}</style>"
                "<p>truth above, reconstruction below; red: missed, amber: wrong</p><table>"
                + "".join(rows) + "</table>\n")
        path = directory / "diff.html"
        path.write_text(page, encoding="utf-8")
        return {"diff": str(path)}
