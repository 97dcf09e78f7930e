"""The shared engine of optimization attacks (gradient matching, FedAvg unrolling, batched restarts,
optimizers and schedules, label recovery). Plugins supply a modality's search space and priors."""

from .functional import CandidateUpdate
from .inversion import InversionSettings, invert, per_restart
from .labels import count_labels, idlg_label, last_layer
from .objectives import cosine, l2, objective, tag
from .optim import BatchedLBFGS

__all__ = ["BatchedLBFGS", "CandidateUpdate", "InversionSettings", "count_labels", "cosine", "idlg_label",
           "invert", "l2", "last_layer", "objective", "per_restart", "tag"]
