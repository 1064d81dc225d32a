"""How a tune runs: :class:`TuneOptions`, declared through the one field vocabulary.

The trial budget, the repetitions, the seed, the preset it writes. The keyword arguments
of :meth:`AsyncLlamaSwitch.tune <llamaswitch.AsyncLlamaSwitch.tune>`, the top-level keys
of ``POST /api/v1/tune`` and the options of ``llamaswitch tune`` are these fields; an
unknown one is refused by name.

>>> TuneOptions(budget=0)
Traceback (most recent call last):
...
llamaswitch._errors.ConfigValidationError: budget: must be a whole number from 1 to 10000, got 0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from llamaswitch._errors import ConfigValidationError
from llamaswitch._vocabulary import Number, Switch, Text, Whole, from_data, problems, spec, to_data

__all__ = ["PRESET_ID_PATTERN", "TuneOptions"]

#: What a preset id written by a tune may look like: a name clients can type as a model.
PRESET_ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}"


@attrs.frozen(kw_only=True)
class TuneOptions:
    """How a tune runs and what it writes (every field optional)."""

    budget: int = attrs.field(
        default=30,
        metadata=spec(
            "Trials to measure (pruned ones do not count); fewer when the space is smaller.",
            Whole(1, 10_000),
            cli=("--budget",),
        ),
    )
    repetitions: int = attrs.field(
        default=3,
        metadata=spec(
            "Runs of each test in a trial's first measurement.",
            Whole(1, 1000),
            flags=("-r", "--repetitions"),
        ),
    )
    max_repetitions: int = attrs.field(
        default=12,
        metadata=spec(
            "Most runs of a trial whose score is too close to the best one's to tell apart.",
            Whole(1, 10_000),
        ),
    )
    seed: int | None = attrs.field(
        default=None,
        metadata=spec(
            "Seed of the sampler (unset: a random one, recorded with the tune).",
            Whole(0, 2**31 - 1),
        ),
    )
    preset: str | None = attrs.field(
        default=None,
        metadata=spec(
            "Id of the preset written with the best settings.",
            Text(
                what="a preset id: letters, digits and ._:+- (at most 128)",
                pattern=PRESET_ID_PATTERN,
            ),
            default_doc="`<model stem>-tuned`",
        ),
    )
    save_preset: bool = attrs.field(
        default=True,
        metadata=spec(
            "Write the best settings into the presets file when the tune completes.",
            Switch(),
            cli_style="none",  # the command line says --no-save
        ),
    )
    trial_timeout_s: float | None = attrs.field(
        default=None,
        metadata=spec(
            "Time limit of each trial's llama-bench run (a trial over it fails).",
            Number(above=0),
            default_doc="LLAMASWITCH_BENCH_TIMEOUT_S",
        ),
    )
    extend_default: bool = attrs.field(
        default=False,
        metadata=spec(
            "Start from the space derived from the model and the binary, with space's "
            "fields on top (otherwise space replaces it).",
            Switch(),
        ),
    )

    def __attrs_post_init__(self) -> None:
        errors = problems(self)
        if not errors and self.max_repetitions < self.repetitions:
            errors.append(
                (
                    "max_repetitions",
                    f"must be at least repetitions "
                    f"({self.repetitions}), got {self.max_repetitions}",
                )
            )
        if errors:
            raise ConfigValidationError(errors)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, path: str = "") -> TuneOptions:
        """Options from keyword arguments or a JSON object; unknown keys refused by name."""
        options: TuneOptions = from_data(cls, data, path=path)
        return options

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (fields at their default left out)."""
        return to_data(self)
