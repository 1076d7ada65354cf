"""Kernels of our own for the CPU, built on first use with the machine's C++ compiler (build.py),
and the modules that run on them (rows.py). Without them the models run on PyTorch's kernels."""
