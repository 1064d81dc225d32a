#!/usr/bin/env python3
"""One-command bootstrap for llamaswitch: ``python3 dev.py demo`` and ``python3 dev.py test``.

Each command makes what it needs and nothing more: a virtual environment in ``.venv``
(reused while ``pyproject.toml`` is unchanged), llamaswitch installed into it with its
extras, and the llama.cpp builds in the toolchain cache (reused when present). Only the
standard library is used here, so a fresh machine with Python 3.11+, cmake and a C++
compiler is enough. Works on Linux, macOS and Windows.

    python3 dev.py demo        # serve tiny demo models and print curl lines to try
    python3 dev.py test        # build both llama.cpp generations and run every test
                               # (installs Chromium and ui/'s npm packages when missing)
    python3 dev.py test -k catalog -x   # extra arguments go to pytest
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
EXTRAS = "dev"


def _venv_python() -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    return VENV / sub / ("python.exe" if os.name == "nt" else "python")


def _venv_tool(name: str) -> str:
    sub = "Scripts" if os.name == "nt" else "bin"
    return str(VENV / sub / (f"{name}.exe" if os.name == "nt" else name))


def _run(*args: str | os.PathLike[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, env=env)


def ensure_venv() -> Path:
    """Create ``.venv`` and install llamaswitch into it, unless already up to date."""
    python = _venv_python()
    if not python.exists():
        print(f"creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    stamp = VENV / ".llamaswitch-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        _run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        _run(python, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[{EXTRAS}]")
        stamp.write_text(digest)
    return python


def ensure_cmake(python: Path) -> None:
    """cmake from PyPI into the venv when the machine has none (a C++ compiler it must have)."""
    if shutil.which("cmake") is None:
        _run(python, "-m", "pip", "install", "--quiet", "cmake")
    # The venv's scripts first on PATH: its cmake (if installed above) and its llamaswitch.
    os.environ["PATH"] = str(python.parent) + os.pathsep + os.environ.get("PATH", "")


def ensure_toolchain(*generations: str) -> None:
    """Build (or reuse from the cache) llama.cpp for each generation."""
    ensure_cmake(_venv_python())
    for generation in generations:
        _run(_venv_tool("llamaswitch"), "toolchain", "build", "--generation", generation)


CHROMIUM = Path("/usr/bin/chromium")
UI = ROOT / "ui"


def _apt_install(*packages: str) -> None:
    """Install Debian packages when this is a Debian-like machine and we are root."""
    if shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        print(f"dev.py: cannot install {' '.join(packages)} here (needs apt-get as root); "
              "the browser tests will skip (or fail under CI=true)", file=sys.stderr)  # fmt: skip
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run("apt-get", "update", "-q", env=env)
    _run("apt-get", "install", "-y", "-q", "--no-install-recommends", *packages, env=env)


def ensure_browser_test_tools() -> None:
    """What the dashboard's browser tests need: Debian's Chromium (never a browser that
    Playwright downloads) and axe-core from npm (``npm ci`` in ``ui/``)."""
    missing = [] if CHROMIUM.exists() else ["chromium"]
    if shutil.which("npm") is None:
        missing.append("npm")
    if missing:
        _apt_install(*missing)
    npm = shutil.which("npm")  # npm.cmd on Windows: run it by its full path
    lock = UI / "package-lock.json"
    installed = UI / "node_modules" / ".package-lock.json"
    if npm is not None and (
        not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime
    ):
        _run(npm, "ci", "--prefix", UI, "--no-audit", "--no-fund")


def cmd_test(pytest_args: list[str]) -> int:
    """Everything the test suite needs, then pytest."""
    ensure_venv()
    ensure_toolchain("current", "legacy")
    ensure_browser_test_tools()
    code = subprocess.run([_venv_tool("pytest"), *pytest_args], check=False).returncode
    if code == 5:
        # pytest's "no tests collected": a suite that ran nothing must not pass.
        print("dev.py: pytest collected no tests; treating that as a failure", file=sys.stderr)
        return 1
    return code


def cmd_demo(args: list[str]) -> int:
    """Serve tiny demo models with the REST API and print what to try."""
    ensure_venv()
    ensure_toolchain("current")
    demo_dir = ROOT / "demo"
    env = dict(os.environ)
    env.setdefault("LLAMASWITCH_STATE_DIR", str(demo_dir / "state"))
    _run(
        _venv_tool("llamaswitch"),
        "--models-dir",
        demo_dir / "models",
        "doctor",
        env=_with_models(env, demo_dir),
    )
    return subprocess.run(
        [_venv_tool("llamaswitch"), "--models-dir", str(demo_dir / "models"), "serve",
         "--demo", *args],
        check=False,
        env=env,
    ).returncode  # fmt: skip


def _with_models(env: dict[str, str], demo_dir: Path) -> dict[str, str]:
    # doctor runs before `serve --demo` writes the models: make them first so the report
    # shows a complete setup.
    python = _venv_python()
    subprocess.run(
        [str(python), "-c",
         "import sys; from llamaswitch.testing import write_demo_models; "
         "write_demo_models(sys.argv[1])", str(demo_dir / "models")],
        check=True,
    )  # fmt: skip
    return env


def main() -> int:
    """Dispatch ``demo`` / ``test``."""
    if len(sys.argv) < 2 or sys.argv[1] not in {"demo", "test"}:
        print(__doc__)
        return 2
    command, rest = sys.argv[1], sys.argv[2:]
    try:
        return cmd_test(rest) if command == "test" else cmd_demo(rest)
    except subprocess.CalledProcessError as exc:
        print(f"dev.py: {' '.join(map(str, exc.cmd))} failed with exit code {exc.returncode}",
              file=sys.stderr)  # fmt: skip
        return exc.returncode or 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
