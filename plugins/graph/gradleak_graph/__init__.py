"""gradleak-graph: Graph cases and attacks (GRAIN) on molecules."""

__version__ = "0.1.0"
