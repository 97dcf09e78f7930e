"""gradleak-rl: Federated RL cases and RGIA."""

__version__ = "0.1.0"
