"""Reading a model without changing it: parameters, non-zeros and MACs (:mod:`profile`, :mod:`macs`),
whether pruning disconnected it (:mod:`connectivity`) and whether data fits it (:mod:`datachecks`)."""
