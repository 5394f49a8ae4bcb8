"""PruningSummaries: the sparsity of every prunable weight and of the model, as TensorBoard scalars."""

from __future__ import annotations

import keras
import tensorflow as tf

from tfprune.base.files import check_output_folder
from tfprune.callbacks.updates import active_pruners, measured_sparsities, training_step
from tfprune.layers.targets import is_wrapped

__all__ = ["PruningSummaries"]

MODEL_TAG = "model_sparsity"
MOVED_TAG = "connections_moved"


def weight_tag(path):
    """The scalar tag of one weight's sparsity: ``"sparsity/<weight path>"``."""
    return f"sparsity/{path}"


def moved_tag(path):
    """The scalar tag of the connections one weight moved at an update: ``"connections_moved/<weight path>"``."""
    return f"{MOVED_TAG}/{path}"


class PruningSummaries(keras.callbacks.Callback):
    """Writes the sparsity (removed fraction) of a wrapped model to TensorBoard event files.

    Scalars ``sparsity/<weight path>`` for every prunable weight and ``model_sparsity`` over all of
    them together, at the end of every epoch (measured on the masks) and — with a
    :class:`tfprune.callbacks.GradualPruning` or :class:`tfprune.callbacks.DynamicSparse` (or
    several, over disjoint layers) in the same ``fit``, in any order — at every mask update, the
    weights that update changed. A ``DynamicSparse`` update also writes the
    number of connections it moved, ``connections_moved/<weight path>`` and ``connections_moved``
    (all weights together). The TensorBoard step is the optimizer's iteration count: an update
    made before step ``i`` trains is logged at ``i``, an epoch that ended after ``i`` steps at ``i``. Updates are
    written at the next batch's start or epoch's end (from the statistics the update kept), so
    the callback reads nothing from the device between epochs, and leaves Keras's asynchronous
    batch-end dispatch on. The writer is opened when training begins and closed when it ends.

    Args:
        log_dir: Folder for the event files (created if missing); point ``tensorboard --logdir``
            at it.

    Raises:
        ImportError: if the ``tensorboard`` package, which ``tf.summary`` needs, is not installed.
        ArgumentError: if ``log_dir`` is not a path (a str or ``os.PathLike``).
        NotADirectoryError, PermissionError: at construction and again when ``fit`` starts
            (before the first step), if ``log_dir`` is a file, lies under a file, or is (or would
            be created in) a folder that is not writable
            (:func:`tfprune.base.files.check_output_folder`).
        ValueError: when ``fit`` starts, if the model is not wrapped.

    Example:
        >>> callbacks = [tfprune.callbacks.GradualPruning(schedule), tfprune.callbacks.PruningSummaries("logs")]
        >>> wrapped.fit(x, y, epochs=5, callbacks=callbacks)   # then: tensorboard --logdir logs
    """

    def __init__(self, log_dir):
        super().__init__()
        try:
            import tensorboard  # noqa: F401  (tf.summary.scalar is a stub that raises without it)
        except ImportError as error:
            raise ImportError("PruningSummaries writes with tf.summary, which needs the tensorboard package "
                              "(TensorFlow 2.21 no longer installs it): pip install tensorboard") from error
        self.log_dir = check_output_folder(log_dir, "log_dir")
        self._writer = None
        self._logged = {}  # id(pruning callback) -> its updates of the current fit already written

    def set_model(self, model):
        if not is_wrapped(model):
            raise ValueError(
                f"PruningSummaries logs the masks of a wrapped model, and {model.name!r} has none: call "
                "tfprune.wrap(model) (or tfprune.prune_at_init) and fit the result"
            )
        super().set_model(model)

    def on_train_begin(self, logs=None):
        check_output_folder(self.log_dir, "log_dir")  # it may have changed since construction
        self._writer = tf.summary.create_file_writer(self.log_dir)
        self._logged = {}

    def on_train_batch_begin(self, batch, logs=None):
        self._write_updates()

    def on_epoch_end(self, epoch, logs=None):
        self._write_updates()
        self._write(training_step(self.model), *measured_sparsities(self.model))

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write_updates(self):
        """Writes the updates the active pruning callbacks made in this fit since the last call."""
        for pruning in active_pruners(self.model):
            done = self._logged.get(id(pruning), 0)
            for update in pruning.fit_updates[done:]:
                self._write(update.step, update.sparsities, update.model_sparsity, update.moved)
            self._logged[id(pruning)] = len(pruning.fit_updates)

    def _write(self, step, sparsities, model_sparsity, moved=None):
        with self._writer.as_default(step=step):
            for name, value in sparsities.items():
                tf.summary.scalar(weight_tag(name), value)
            tf.summary.scalar(MODEL_TAG, model_sparsity)
            if moved is not None:
                for name, count in moved.items():
                    tf.summary.scalar(moved_tag(name), count)
                tf.summary.scalar(MOVED_TAG, sum(moved.values()))
        self._writer.flush()
