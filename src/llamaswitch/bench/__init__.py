"""Benchmarks: llama-bench's config, its output parser, tasks, the history and the runner.

Internal modules; the public names are importable from :mod:`llamaswitch`.

- :mod:`~llamaswitch.bench.config`: :class:`BenchConfig` and its argv.
- :mod:`~llamaswitch.bench.parser`: every llama-bench output format.
- :mod:`~llamaswitch.bench.store`: the SQLite history.
- :mod:`~llamaswitch.bench.runner`: :class:`BenchRunner`, tasks as managed processes.
"""
