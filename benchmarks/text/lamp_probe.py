"""LAMP ablation probe: one attack on ``text/bert-tiny`` at batch 1 with ``--set``-style overrides.

Prints the metrics, the CPU seconds and each decoded reconstruction (the ablation behind the LAMP defaults,
recorded in ``results/lamp-ablation-bert-tiny.json``):

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/text/lamp_probe.py lamp 2 '{"iterations": 300, "swap_burnin": 1.0}'
    DATA=held_out.txt OMP_NUM_THREADS=1 python benchmarks/text/lamp_probe.py tag 2 '{"iterations": 300}'

``DATA`` names a text file (one sentence a line) instead of the built-in Rotten Tomatoes sentences.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import torch

import gradleak


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from gradleak_text import optimization
    from gradleak_text.vocab import load_tokenizer

    tok = load_tokenizer("bert")
    attack, batches = sys.argv[1], int(sys.argv[2])
    sets = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    cls = {"tag": optimization.Tag, "lamp": optimization.Lamp}[attack]
    inner = cls.reconstruct

    def reconstruct(self, update, view, budget=None):
        r = inner(self, update, view, budget)
        print("  REC:", tok.decode(r.batch.data.ids[0]), "| info", r.info, flush=True)
        return r

    cls.reconstruct = reconstruct
    start = time.process_time()
    r = gradleak.run("text/bert-tiny", attack, data=os.environ.get("DATA") or None, batch_size=1, batches=batches,
                     seed=0, device="cpu", sets=sets)
    print(attack, sets, {k: round(v, 3) for k, v in r.metrics.items()}, "cpu", round(time.process_time() - start, 1))
    print("  per-sample rouge1", [round(s["rouge1"], 2) for s in r.per_sample])


if __name__ == "__main__":
    main()
