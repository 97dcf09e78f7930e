"""gradleak-snn: Spiking-network cases and spike-domain attacks."""

__version__ = "0.1.0"
