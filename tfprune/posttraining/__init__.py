"""Post-training pruning of language models: Wanda and SparseGPT, block by block, without retraining."""

from tfprune.posttraining.prune import CRITERIA, prune
from tfprune.posttraining.sparsegpt import SingularHessianError

__all__ = ["CRITERIA", "SingularHessianError", "prune"]
