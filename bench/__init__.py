"""Load benchmark of tokengate against nginx on loopback (``python -m bench.run``)."""
