"""Foundations that know nothing of pruning: walking a model's layers (:mod:`walk`), NumPy views of
variables (:mod:`views`), atomic file writes (:mod:`files`), running under a tf.distribute strategy
(:mod:`distribute`), the Keras backend and the features only TensorFlow's has (:mod:`backends`) and
renamed arguments and modules (:mod:`deprecation`)."""
