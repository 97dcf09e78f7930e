"""``gradleak text ...``: commands of the text plugin."""

from __future__ import annotations

from pathlib import Path

import click


@click.group(name="text")
def text() -> None:
    """Text plugin tools (the LAMP language-model prior)."""


@text.command(name="train-lm")
@click.option("--tokenizer", type=click.Choice(["bert", "gpt2"]), default="bert", show_default=True,
              help="vocabulary of the attacked model (bert: the BERT cases; gpt2: text/gpt2-tiny)")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="folder to write the model to (default: the cache LAMP reads)")
@click.option("--steps", type=int, default=200, show_default=True, help="training steps")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def train_lm_command(tokenizer: str, out: Path | None, steps: int, seed: int, device: str) -> None:
    """Train the lm-prior (a 2-layer GPT-2) on public news text (gensim's lee_background.cor)."""
    from gradleak.device import resolve_device

    from .lm import default_path, train_lm

    path = train_lm(tokenizer, tokenizer, out or default_path(tokenizer), steps=steps, seed=seed,
                    device=resolve_device(device))
    click.echo(str(path))
