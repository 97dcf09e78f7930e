"""gradleak-text: Text cases (BERT, GPT-2) and TAG, LAMP, DAGER."""

__version__ = "0.1.0"
