"""Which points of a space can run: llama.cpp's own rules, then the memory budgets.

A point that cannot work is pruned before it runs, with the reason as its record says:

- a micro-batch larger than the batch (llama.cpp caps it: the same as a smaller point);
- a quantized V cache without flash attention (llama.cpp refuses the context);
- a quantized cache whose block does not divide the model's head size (refused too);
- a preset that would not fit the gateway's memory budgets even alone, by the
  gateway's own estimate (:func:`llamaswitch.gateway.memory.estimate`) and placement
  rule: a tune never picks settings the gateway could not then serve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from llamaswitch._capabilities import Capabilities
from llamaswitch._catalog import ModelInfo
from llamaswitch.gateway.memory import estimate
from llamaswitch.gateway.policy import Budget, PlacementPolicy
from llamaswitch.servers.config import ServerConfig
from llamaswitch.tuning.mapping import to_server_config
from llamaswitch.tuning.space import CACHE_BLOCK_SIZES, head_sizes

__all__ = ["Feasibility"]

# llama-bench's default batch size (both generations' --help).
_DEFAULT_BATCH: Final = 2048


@attrs.frozen(kw_only=True)
class Feasibility:
    """Tells why a trial's settings cannot run, before it runs (None: they can)."""

    info: ModelInfo
    #: The preset's settings beyond the tuned ones (its context size...).
    base: ServerConfig
    #: ``GPU_LAYERS``: the default the gateway fills in when the preset leaves it unset.
    gpu_layers: int | None
    #: The llama-server that will serve the preset (its defaults enter the estimate).
    server: Capabilities
    budget: Budget
    gpus: Sequence[int] = ()
    device_totals: Mapping[int, float] = attrs.field(factory=dict)
    #: Whether llama-bench uses flash attention when it is not set (current: auto).
    flash_by_default: bool = False

    def problem(self, settings: Mapping[str, Any]) -> str | None:
        """Why ``settings`` (llama-bench fields) cannot run, or None."""
        return self.rule_problem(settings) or self.memory_problem(settings)

    def rule_problem(self, settings: Mapping[str, Any]) -> str | None:
        """A llama.cpp rule the settings break, or None."""
        # Only a micro-batch set on purpose: unset, llama.cpp takes min(512, batch_size).
        ubatch = settings.get("ubatch_size")
        batch = settings.get("batch_size") or _DEFAULT_BATCH
        if ubatch is not None and ubatch > batch:
            return (
                f"ubatch_size {ubatch} > batch_size {batch}: llama.cpp caps it at the batch "
                "size, so it measures the same as a smaller ubatch_size"
            )
        key_size, value_size = head_sizes(self.info)
        for field, size in (("cache_type_k", key_size), ("cache_type_v", value_size)):
            cache = settings.get(field)
            block = CACHE_BLOCK_SIZES.get(cache or "f16", 1)
            if size and size % block:
                return (
                    f"{field} {cache} stores blocks of {block}, which do not divide the "
                    f"model's head size {size}: llama.cpp refuses it"
                )
        flash = settings.get("flash_attn", self.flash_by_default)
        value_cache = settings.get("cache_type_v")
        if CACHE_BLOCK_SIZES.get(value_cache or "f16", 1) > 1 and flash is False:
            return (
                f"a quantized V cache ({value_cache}) needs flash attention: llama.cpp refuses it"
            )
        return None

    def memory_problem(self, settings: Mapping[str, Any]) -> str | None:
        """Why the preset of ``settings`` would not fit the memory budgets, or None."""
        config = to_server_config(settings, self.base).with_defaults(gpu_layers=self.gpu_layers)
        need = estimate(
            self.info, config, gpus=self.gpus, caps=self.server, device_totals=self.device_totals
        )
        plan = PlacementPolicy().place("these settings", need, [], self.budget)
        if plan.action != "refuse":
            return None
        return f"would not fit the memory budget by the gateway's estimate ({plan.reason})"
