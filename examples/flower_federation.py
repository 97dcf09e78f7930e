"""A Flower federation under attack: clients train a gradleak case, a curious server attacks every update.

    python examples/flower_federation.py                                  # vision/lenet, 3 clients, 2 rounds
    python examples/flower_federation.py --case text/gpt2-tiny --attack dager
    python examples/flower_federation.py --case vision/mlp --attack analytic-fc \\
        --malicious trap-weights --detector suspicion                     # a malicious server, detecting clients
    gradleak report flower-out                                            # the reconstructions, per round

Client 1 defends itself with `--defense` (default: DLG's pruning at 99%); the others send raw updates.
With `--malicious ATTACK` the server sends ATTACK's trapped model to clients 0 and 2 (an active attack that
only changes weights, e.g. trap-weights on vision/mlp); with `--detector NAME` every client scores the
model it receives and client 2 refuses the rounds its detector flags.
Clients write their batches to OUT/audit so the server's reconstructions can be scored: an audit you run
on your own federation, never something a real server could do.
"""

from __future__ import annotations

import argparse

from gradleak.integrations.flower import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="vision/lenet")
    parser.add_argument("--attack", default="idlg", help="passive attack run on every update")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--defense", default="prune:ratio=0.99", help="client 1's defense")
    parser.add_argument("--malicious", default=None, help="active attack whose model clients 0 and 2 receive")
    parser.add_argument("--detector", default=None, help="client-side detector (client 2 refuses flagged rounds)")
    parser.add_argument("--out", default="flower-out")
    args = parser.parse_args()
    attacks = [args.attack] + ([args.malicious] if args.malicious else [])
    malicious = {c: args.malicious for c in (0, 2) if c < args.clients} if args.malicious else None
    frame = simulate(args.case, attacks, args.out, clients=args.clients, rounds=args.rounds,
                     batch_size=args.batch_size, budget=args.budget, sets={"local_lr": 0.1},
                     defenses={1: [args.defense]}, malicious=malicious,
                     detectors=[args.detector] if args.detector else (), refuse_flagged={2})
    shown = ("key", "defense", "status", "psnr", "ssim", "rouge1", "exact", "label_acc", f"detector.{args.detector}")
    print(frame[[c for c in shown if c in frame.columns]].to_string(index=False))
    print(f"results: {args.out}/results.sqlite   report: gradleak report {args.out}")


if __name__ == "__main__":
    main()
