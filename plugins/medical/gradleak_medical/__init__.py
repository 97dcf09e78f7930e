"""gradleak-medical: Biomedical image cases and defenses."""

__version__ = "0.1.0"
