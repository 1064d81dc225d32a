"""When a launch turns llama.cpp's memory fit off: only where it has nothing to change.

Current llama-server builds run ``--fit`` (on by default) before they load a model: a
dry run of the load, with the model and context measured but not allocated, that then
"adjusts unset arguments to fit in device memory" (its ``--help``). In
``common/fit.cpp`` it may change only two things:

- the context size, and only when it is unset (``-c 0`` or none);
- the GPU layers (with the tensor split and the overrides they imply), and only when
  ``-ngl`` is at llama.cpp's default (``auto``) and the model has a device to place
  layers on: a GPU, or an RPC server.

With the context set, and the layers set or no such device, it measures, then logs "no
changes needed" or "n_gpu_layers already set by user" and loads the model as it would
have without it. That pass is not free: it sets up the model and its context once
more, without their memory; on a tiny model it took 1.5 ms of a 20 ms start (medians of
25 direct starts with ``--fit off`` and without, interleaved). So a launch where fit can
change nothing passes ``--fit off`` (:func:`fit_args`); every other launch leaves the fit
as the user or llama.cpp has it. The status's argv shows the flag.
"""

from __future__ import annotations

from collections.abc import Mapping

from llamaswitch._binaries import BinaryInfo
from llamaswitch.servers.checks import rpc_values
from llamaswitch.servers.config import ServerConfig

__all__ = ["FIT_FLAGS", "fit_args", "fit_is_idle"]

#: The flags, and the variables' prefix, that tune the fit: where the user passes any of
#: them, the fit is theirs to run.
FIT_FLAGS: frozenset[str] = frozenset(
    {"-fit", "--fit", "-fitt", "--fit-target", "-fitc", "--fit-ctx"}
)
_FIT_ENV_PREFIX = "LLAMA_ARG_FIT"
# llama.cpp's default -ngl (common.h: -1, "auto"): the one value fit may replace.
_DEFAULT_LAYERS = (None, "auto")


def fit_is_idle(config: ServerConfig, binary: BinaryInfo) -> bool:
    """Whether llama.cpp's fit could change nothing of ``config`` on ``binary``: the
    context is set, and the GPU layers are set or there is no device to place them on
    (see the module docstring)."""
    if not config.ctx_size:
        return False
    if config.n_gpu_layers not in _DEFAULT_LAYERS:
        return True
    return binary.cpu_only and not rpc_values(config)


def fit_args(config: ServerConfig, binary: BinaryInfo, env: Mapping[str, str]) -> list[str]:
    """``["--fit", "off"]`` (in the binary's spelling) where the binary has ``--fit``, the
    fit is idle (:func:`fit_is_idle`) and neither ``extra_args`` nor ``env`` (the
    server's whole environment) tunes it; otherwise nothing."""
    caps = binary.capabilities
    if not caps.has("-fit", "--fit") or not fit_is_idle(config, binary):
        return []
    if any(arg.partition("=")[0] in FIT_FLAGS for arg in config.extra_args):
        return []
    if any(key.upper().startswith(_FIT_ENV_PREFIX) for key in env):
        return []
    return caps.option("fit", "off", "-fit", "--fit")
