"""Tuning: from benchmarks to the best serving settings, saved as a preset.

``ls.tune(model, space=..., objective=..., budget=...)`` searches llama-bench settings
with Optuna's TPE sampler (the ``tune`` extra), each trial a benchmark task, and writes
the best as a ``[models.<id>]`` preset that the gateway serves at once. See
``docs/tuning.md``.

- :mod:`~llamaswitch.tuning.space`: what is searched, derived or given;
- :mod:`~llamaswitch.tuning.objective`: the score, repetitions that adapt to the noise;
- :mod:`~llamaswitch.tuning.feasibility`: what is pruned before it runs;
- :mod:`~llamaswitch.tuning.mapping`: llama-bench fields to llama-server settings;
- :mod:`~llamaswitch.tuning.pareto`: the front of prompt against generation speed;
- :mod:`~llamaswitch.tuning.store`, :mod:`~llamaswitch.tuning.records`: the studies;
- :mod:`~llamaswitch.tuning.runner`: the search loop;
- :mod:`~llamaswitch.tuning.preset_file`: the presets file, other tables kept as they are.
"""

from llamaswitch.tuning.objective import Objective
from llamaswitch.tuning.options import TuneOptions
from llamaswitch.tuning.pareto import pareto_front
from llamaswitch.tuning.space import TuneSpace
from llamaswitch.tuning.tune import TRIAL_STATES, TUNE_STATES, Trial, Tune, TunePreset, TuneProgress

__all__ = [
    "TRIAL_STATES",
    "TUNE_STATES",
    "Objective",
    "Trial",
    "Tune",
    "TuneOptions",
    "TunePreset",
    "TuneProgress",
    "TuneSpace",
    "pareto_front",
]
