"""pytest-benchmark micro-benchmarks (``make bench-micro``): timed in-process, never asserted on."""
