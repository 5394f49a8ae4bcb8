"""The experiment harness: datasets (:mod:`data`), the papers' reference networks (:mod:`models`),
accuracy and collapse sweeps (:mod:`sweep`, :mod:`collapse`, :mod:`grid`), the demo and the
``tfprune`` command (:mod:`demo`, :mod:`cli`). It uses the library; the library never imports it."""
