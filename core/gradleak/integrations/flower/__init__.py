"""Attack a real Flower federation: a curious (or malicious) server strategy and defended clients.

Server side: :class:`AttackingStrategy` wraps any Flower strategy (FedAvg, FedProx, ...). It delegates every
decision to the wrapped strategy and, in addition, records the global model it sends to each client and,
when the client's new weights come back, turns them into a gradleak :class:`~gradleak.Update` (the weight
delta of the client's local training) and runs the chosen gradleak attacks on it, after the round or in a
background thread. Results go to the same results store as studies (``DIR/results.sqlite``), one row per
(round, client, attack), so ``gradleak report DIR`` shows the federation's reconstructions.

Malicious mode: for the clients named in ``malicious`` (partition ids, which the server asks each client
for once through Flower's ``get_properties``), the strategy sends the active attack's ``prepare(model)``
instead of the global model, runs that active attack only on those clients' updates (passive attacks run on
every update) and leaves those updates out of the aggregate, so the global model carries no trace. Flower
ships parameters, not code, so only active attacks that keep the model's architecture (changing weights
only, e.g. ``trap-weights`` on ``vision/mlp``) can be used; others are refused with a one-line error.

Client side: :class:`GradleakClient` is a Flower ``NumPyClient`` training a gradleak case on its share of
the data, with any gradleak defenses, and scoring every received model with detectors (scores are sent back
as fit metrics and stored beside the reconstructions as ``detector.<name>`` metrics; a client with
``refuse_flagged`` returns the received weights unchanged when a detector fires, and the server records the
round as skipped with that reason). :class:`DefendedClient` wraps a Flower client you already have (your
own model and training code) with gradleak's update defenses and model detectors.

Scoring needs the truth, which a real server never has: in an *audit* (a simulation the auditor controls),
clients write the batch they trained on to ``audit_dir`` and the strategy scores reconstructions against it.
Without ``audit_dir`` reconstructions are stored unscored.

Parameters travel as the model's ``state_dict`` values in order (parameters and buffers), on both sides.
"""

from ...optional import import_optional

import_optional("flwr", "gradleak[flower]", "the Flower integration")

from .arrays import model_to_ndarrays, ndarrays_to_model  # noqa: E402
from .client import GradleakClient, client_fn_for  # noqa: E402
from .server import AttackingStrategy  # noqa: E402
from .simulation import simulate  # noqa: E402
from .wrap import DefendedClient  # noqa: E402

__all__ = ["AttackingStrategy", "DefendedClient", "GradleakClient", "client_fn_for", "model_to_ndarrays", "ndarrays_to_model",
           "simulate"]
