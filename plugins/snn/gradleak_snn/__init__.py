"""gradleak-snn: spiking-network cases and spike-domain gradient leakage attacks.

Reproduces the setting of Aksu, Martinez del Rincon, Alouani, "Privacy in Federated Learning with Spiking
Neural Networks" (2025): LIF networks (snntorch) trained with surrogate gradients, their ANN twins, rate /
latency / direct encodings of real MNIST digits, event-camera frames (real N-MNIST files via tonic, synthetic
saccade streams offline), the ``spikes`` modality on which the core's dlg, idlg and inverting-gradients run,
``spike-dlg``, and the metrics ``temporal_consistency`` and ``spike_f1``.
"""

__version__ = "0.1.0"
