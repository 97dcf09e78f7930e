"""A Flower federation under attack: clients train a gradleak case, a curious server attacks every update.

    python examples/flower_federation.py                                  # vision/lenet, 3 clients, 2 rounds
    python examples/flower_federation.py --case text/bert-tiny --attack tag --budget 200
    gradleak report flower-out                                            # the reconstructions, per round

Client 1 defends itself with `--defense` (default: DLG's pruning at 99%); the others send raw updates.
Clients write their batches to OUT/audit so the server's reconstructions can be scored: an audit you run
on your own federation, never something a real server could do.
"""

from __future__ import annotations

import argparse

from gradleak.integrations.flower import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default="vision/lenet")
    parser.add_argument("--attack", default="idlg")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--defense", default="prune:ratio=0.99", help="client 1's defense")
    parser.add_argument("--out", default="flower-out")
    args = parser.parse_args()
    frame = simulate(args.case, [args.attack], args.out, clients=args.clients, rounds=args.rounds, budget=args.budget,
                     sets={"local_lr": 0.1}, defenses={1: [args.defense]})
    columns = [c for c in ("key", "defense", "status", "psnr", "ssim", "rouge1", "label_acc") if c in frame.columns]
    print(frame[columns].to_string(index=False))
    print(f"results: {args.out}/results.sqlite   report: gradleak report {args.out}")


if __name__ == "__main__":
    main()
