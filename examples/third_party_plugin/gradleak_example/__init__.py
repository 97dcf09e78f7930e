"""gradleak-example-zero: a template third-party gradleak plugin (the mean-image baseline attack)."""

__version__ = "0.1.0"
