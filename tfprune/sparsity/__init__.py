"""From scores to masks: exact top-k (:mod:`topk`), masks with their scope and per-tensor allocation
(:mod:`masks`), N:M and block patterns (:mod:`patterns`) and sparsity schedules (:mod:`schedules`).
Plain NumPy and Python: nothing here computes a gradient."""
