"""What tfprune knows about layers: each type's prunable weights, axes and MAC formula
(:mod:`specs`, :mod:`kinds`, :mod:`mac_formulas`), which layers a model prunes (:mod:`policies`,
:mod:`targets`), the masking wrapper (:mod:`masked`, :mod:`changes`) and putting it on and taking it
off a model (:mod:`wrapping`)."""
