"""The benchmark harness's library: see bench/bench.py for how it fits."""
