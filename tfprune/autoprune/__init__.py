"""AutoPrune: pruning by trainable auxiliary parameters (Xiao, Wang, Rajasekaran, NeurIPS 2019)."""
from tfprune.autoprune.trainable_masks import (STES, MODES, masked_kernel, aux_norm, AutoPruneLayer, wrap, aux_variables, set_penalty, AuxOptimizer, Monitor, PenaltySchedule, harden)

__all__ = ['STES', 'MODES', 'masked_kernel', 'aux_norm', 'AutoPruneLayer', 'wrap', 'aux_variables', 'set_penalty', 'AuxOptimizer', 'Monitor', 'PenaltySchedule', 'harden']
