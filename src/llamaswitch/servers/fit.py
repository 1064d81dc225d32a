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
more, without their memory. On a tiny model it took 3.5 ms of a 38 ms cold start to the
first streamed token, in 40 pairs of direct starts, the two kinds alternating.

The pass leaves one thing behind, though: the C library's allocator tuned. glibc's
malloc raises its mmap threshold (and its trim threshold, to twice that) the first time
a large block it mapped is freed, and the dry run frees such blocks. Without the pass,
the thresholds stay at glibc's 128 KiB, and a server that decodes 16 streams at once
maps or trims and faults in the memory of each step again: 19,000 page faults in 300
tokens a stream, against 520 with the fit. It streamed fewer chunks per second: 0.89 of
the same server with the fit (median of 60 pairs of starts in alternating order, lower
in 47). So where the fit is turned off, the server is given fixed thresholds instead,
through ``GLIBC_TUNABLES``: mmap at 32 MiB (glibc's ceiling for the threshold it raises
itself, on 64-bit systems) and trim at 64 MiB (twice that, as its own rule gives). With
them the page faults were 555 with or without the fit, and the throughput 1.06 of the
fit's (median of 12 rounds).

So a launch where the fit can change nothing, on a 64-bit Linux with glibc, passes
``--fit off`` and those tunables (:func:`fit_skip`); every other launch leaves the fit
as the user or llama.cpp has it: other systems' allocators were not measured, and a
``GLIBC_TUNABLES`` the user sets is theirs. The status's argv shows the flag.
"""

from __future__ import annotations

import functools
import platform
import sys
from collections.abc import Mapping

import attrs

from llamaswitch._binaries import BinaryInfo
from llamaswitch.servers.checks import rpc_values
from llamaswitch.servers.config import ServerConfig

__all__ = [
    "FIT_FLAGS", "KEEP", "MALLOC_TUNABLES", "TUNABLES", "FitSkip", "fit_is_idle", "fit_skip",
    "glibc_tunable",
]  # fmt: skip

#: The flags, and the variables' prefix, that tune the fit: where the user passes any of
#: them, the fit is theirs to run.
FIT_FLAGS: frozenset[str] = frozenset(
    {"-fit", "--fit", "-fitt", "--fit-target", "-fitc", "--fit-ctx"}
)
_FIT_ENV_PREFIX = "LLAMA_ARG_FIT"
# llama.cpp's default -ngl (common.h: -1, "auto"): the one value fit may replace.
_DEFAULT_LAYERS = (None, "auto")

#: The variable glibc reads its tunables from, at a process's start.
TUNABLES = "GLIBC_TUNABLES"
_MIB = 1024 * 1024
#: Its value: glibc's ceiling for the mmap threshold it raises itself
#: (DEFAULT_MMAP_THRESHOLD_MAX: 4 MiB times the size of a long), and the trim threshold
#: its rule sets beside it.
MALLOC_TUNABLES = f"glibc.malloc.mmap_threshold={32 * _MIB}:glibc.malloc.trim_threshold={64 * _MIB}"


@attrs.frozen
class FitSkip:
    """What a launch adds to skip the fit: its arguments, and its environment."""

    args: tuple[str, ...] = ()
    env: Mapping[str, str] = attrs.field(factory=dict)


#: A launch that keeps the fit adds nothing.
KEEP = FitSkip()


def fit_is_idle(config: ServerConfig, binary: BinaryInfo) -> bool:
    """Whether llama.cpp's fit could change nothing of ``config`` on ``binary``: the
    context is set, and the GPU layers are set or there is no device to place them on
    (see the module docstring)."""
    if not config.ctx_size:
        return False
    if config.n_gpu_layers not in _DEFAULT_LAYERS:
        return True
    return binary.cpu_only and not rpc_values(config)


@functools.cache
def glibc_tunable() -> bool:
    """Whether this system's allocator is glibc's, on 64 bits (its ceiling above holds)."""
    return (sys.platform == "linux" and sys.maxsize > 2**32
            and platform.libc_ver()[0] == "glibc")  # fmt: skip


def fit_skip(
    config: ServerConfig, binary: BinaryInfo, env: Mapping[str, str], *,
    tunable: bool | None = None,
) -> FitSkip:  # fmt: skip
    """``--fit off`` (in the binary's spelling) and the allocator's tunables, where the
    binary has ``--fit``, the fit is idle (:func:`fit_is_idle`), neither
    ``extra_args`` nor ``env`` (the server's whole environment) tunes it or glibc, and
    the system's allocator is glibc's (``tunable``, by default :func:`glibc_tunable`);
    otherwise nothing."""
    caps = binary.capabilities
    if not caps.has("-fit", "--fit") or not fit_is_idle(config, binary):
        return KEEP
    # The cached answer first: elsewhere the scans below, on a load's path, are not run.
    if not (glibc_tunable() if tunable is None else tunable):
        return KEEP
    if any(arg.partition("=")[0] in FIT_FLAGS for arg in config.extra_args):
        return KEEP
    if any(key.upper().startswith(_FIT_ENV_PREFIX) or key == TUNABLES for key in env):
        return KEEP
    return FitSkip(tuple(caps.option("fit", "off", "-fit", "--fit")),
                   {TUNABLES: MALLOC_TUNABLES})  # fmt: skip
