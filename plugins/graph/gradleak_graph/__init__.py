"""gradleak-graph: GRAIN exact graph reconstruction (Drencheva et al., ICLR 2025), its GCN/GAT cases and metrics."""

__version__ = "0.1.0"
