"""GraSP: gradient signal preservation (Wang, Zhang and Grosse, ICLR 2020).

The authors score ``S = −θ ⊙ (H g)`` and *remove* the highest; tfprune keeps the highest, so it
returns ``θ ⊙ (H g)`` (the same ranking), divided by ``|Σ θ ⊙ H g| + 1e-10`` as in their code.
``g = Σ_b ∂L_b/∂θ`` is accumulated first and held constant; ``H g`` is then
``Σ_b ∂(g · ∂L_b/∂θ)/∂θ`` by double backprop (nested ``tf.GradientTape``). For a classifier's
class-id labels, logits are divided by a temperature ``T = 200`` before the loss; the temperature
and the class-balanced draw are defined for class ids only (other labels — per-pixel or per-token
labels, regression targets, several outputs — are scored at ``T = 1``, and asking for either is
refused).

The defaults follow the authors' code (``pruner/GraSP.py``, run as their CIFAR configurations
do), not the re-implementation in the SynFlow code:

* **batch norm on batch statistics** (``batch_statistics=True``): their network is scored in
  PyTorch's ``train()`` mode, so batch norm normalises each batch by its own statistics and the
  gradient flows through them. Scored with moving statistics instead — at initialisation batch
  norm is then the identity — GraSP keeps mostly positive weights ahead of ReLUs and the
  batch-norm VGG of docs/results.md does not train (17 % against 46 % on CIFAR-10).
  The moving averages are never updated.
* **Dense kernels re-drawn** for the score (``reinit_dense=True``): their code re-initialises
  every ``nn.Linear`` weight with ``xavier_normal`` on a copy of the network; here the score is
  computed as if every Dense kernel were Glorot-normal (the model's own weights do not change).
* **Two batches**: the scoring examples are split in halves (``N // 2``) and ``g`` and ``H g``
  summed over the two, so batch statistics come from half the examples.
* **10 examples per class** (their CIFAR-10 and CIFAR-100 VGG configurations): the default
  ``samples`` is 10 × the number of classes. Their draw is class-balanced and grouped by class
  (so each half holds different classes); ``samples_per_class=10`` reproduces it from arrays.

The SynFlow code (Tanaka et al. 2020) scores GraSP in ``eval()`` mode, on one batch, without the
re-initialisation: ``batch_statistics=False, reinit_dense=False, batch_size=samples``. Its first
public GraSP scorer (commit 432dd64) differed more: no temperature, no normalisation, and it kept
the highest ``−θ ⊙ H g`` — the opposite of GraSP's rule — until commits e7dc110 (T = 200, the
normalisation) and e329c2e (the sign). The SynFlow paper's GraSP figures (critical compression
10^3.5 on VGG-16) predate those fixes; tfprune implements only GraSP's published rule.
"""

import keras
from keras import ops

from tfprune.analysis import datachecks
from tfprune.autodiff import batches as batches_lib
from tfprune.autodiff import losses
from tfprune.autodiff.gradients import effective_gradients, effective_values, hessian_gradient, normalised
from tfprune.base import arguments
from tfprune.scores.registry import register

DEFAULT_TEMPERATURE = 200.0


@register("grasp", needs_data=True)
def grasp(model, targets, data, samples=None, batch_size=None, loss=None, from_logits=True,
          temperature=None, reinit_dense=True, seed=None, strategy=None, batch_statistics=True,
          samples_per_class=None):
    """GraSP scores ``θ ⊙ H g`` (keep the highest), normalised by ``|Σ| + 1e-10``.

    The defaults are the authors' (see the module docstring).

    Args:
        model: The model (wrapped: its masks apply).
        targets: From :func:`tfprune.prunable_weights`.
        data: Data as ``model.fit`` takes it (see :func:`tfprune.scores.snip`).
        samples: Examples to use; default 10 × the number of classes.
        batch_size: Batch size for arrays; default half the samples (two batches, as the
            authors). Batches of a dataset are used as they come.
        loss: As for :func:`tfprune.scores.snip`: default the model's compiled loss.
        from_logits: For the default loss: score on the logits (``True``; a final softmax or
            sigmoid of the model is skipped for the score) or on the outputs taken as
            probabilities (``False``).
            The temperature divides logits: with ``from_logits=False`` it must be 1.
        temperature: Logits are divided by it before the loss; default the authors' 200 for
            class-id labels and 1 for any other labels (a value other than 1 is refused there).
        reinit_dense: Score with Glorot-normal Dense kernels, as the authors' code does.
        seed: Seed of that re-initialisation (default: drawn from Keras's global seed).
        strategy: A ``tf.distribute`` strategy to score under; default the one the model was
            built under (gradients and Hessian-vector products all-reduced over its replicas).
        batch_statistics: Batch norm normalises each batch by its own statistics, differentiated
            through (the authors' ``train()`` mode; moving averages are not updated); ``False``
            uses the moving statistics (inference mode, as the SynFlow code).
        samples_per_class: Instead of ``samples``: the first this many examples of each class,
            grouped by class, from arrays of class-id labels (the authors' draw: 10 on CIFAR).

    Returns:
        One float32 array per target.

    Raises:
        ArgumentError: for a temperature that is not a number > 0.
        ValueError: for a temperature other than 1 with ``from_logits=False`` or with labels that
            are not class ids, or data that do not fit (:func:`tfprune.autodiff.batches.scoring_batches`).

    Warns:
        UserWarning: when ``samples_per_class`` is more than a class of ``data`` has (the score
            then uses all the examples of that class; :func:`~tfprune.autodiff.gradients.class_balanced`).

    Example:
        >>> pruned = tfprune.prune_at_init(model, "grasp", sparsity=0.9, data=(x[:100], y[:100]))
    """
    temperature = arguments.number("temperature", temperature, 0, low_open=True, optional=True)
    loss = losses.resolve(model, loss, from_logits)
    batches = batches_lib.scoring_batches(model, data, samples, batch_size, loss=loss,
                                          samples_per_class=samples_per_class)
    temperature = _temperature(model, batches, temperature)
    if not from_logits and temperature != 1:
        raise ValueError("GraSP's temperature divides logits: use a model with logit outputs, or temperature=1")
    if batch_size is None and datachecks.unpack(data) is not None:
        batches = [half for batch in batches for half in batches_lib.halves(batch)]
    values = effective_values(targets)
    if reinit_dense:
        values = _glorot_dense(targets, values, seed)
    options = dict(loss=loss, from_logits=from_logits, values=values, temperature=temperature, strategy=strategy,
                   batch_statistics=batch_statistics)
    g = effective_gradients(model, targets, batches, **options)
    hg = hessian_gradient(model, targets, batches, g, **options)
    return normalised([w * h for w, h in zip(values, hg)], absolute_sum=True, epsilon=1e-10)


def _temperature(model, batches, temperature):
    """The temperature to score with: the authors' for class-id labels, 1 for any other labels
    (where a temperature is not defined, and one asked for is refused)."""
    if batches_lib.class_ids(model, batches):
        return DEFAULT_TEMPERATURE if temperature is None else temperature
    if temperature not in (None, 1):
        reason = datachecks.class_ids_problem(model, batches[0].y) or "their labels are not class ids"
        raise ValueError(f"GraSP's temperature divides a classifier's logits for class-id labels, but the data are not "
                         f"such ({reason.split(': ', 1)[-1]}): leave temperature out (1 for these labels)")
    return 1.0


def _glorot_dense(targets, values, seed):
    """Glorot-normal draws for the kernels of Dense layers, masked; other values unchanged."""
    init = keras.initializers.GlorotNormal(seed=seed)
    out = []
    for t, v in zip(targets, values):
        if isinstance(t.layer, keras.layers.Dense) and t.kind == "dense":
            fresh = init(t.shape, dtype=t.variable.dtype)
            v = fresh if t.mask is None else ops.multiply(fresh, t.mask.value)
        out.append(v)
    return out
