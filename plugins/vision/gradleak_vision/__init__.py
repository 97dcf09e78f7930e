"""gradleak-vision: image cases, attacks, priors, metrics and defenses."""

__version__ = "0.1.0"
