"""Benchmarks (not tests): time, CPU and peak memory per stage at several sizes, each against a floor
measured in the same run. `make bench` runs them all and rewrites their sections of bench/RESULTS.md."""
