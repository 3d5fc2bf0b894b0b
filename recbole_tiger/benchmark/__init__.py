"""Side-by-side benchmarks behind ``run_benchmark.py``: several models trained and tested under one
config, split and evaluator, each in a child process, rows merged into ``results/<dataset>.{csv,md}``."""
