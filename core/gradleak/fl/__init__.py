"""Federated-learning simulation: protocols, threat models and the client that produces updates."""
