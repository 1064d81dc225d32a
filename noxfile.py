"""Tasks: ``nox -s tests``, ``nox -s lint``, ``nox -s typing``, ``nox -s docs``,
``nox -s bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typing", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The full test suite against real llama.cpp builds of both generations."""
    session.install("-e", ".[http,tune,test]")
    for generation in ("current", "legacy"):
        session.run("llamaswitch", "toolchain", "build", "--generation", generation)
    session.run("pytest", *session.posargs, success_codes=[0])


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and format check."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", "src", "tests", "bench", "noxfile.py", "dev.py")
    session.run("ruff", "format", "--check", "src", "tests", "bench", "noxfile.py", "dev.py")


@nox.session(python="3.11")
def typing(session: nox.Session) -> None:
    """mypy --strict on src/."""
    session.install("-e", ".[http,tune,ray]", "mypy>=1.13", "types-psutil")
    session.run("mypy", "src")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The documentation site: the generated pages are fresh, and mkdocs builds it with
    --strict (a broken link or a docstring mkdocstrings cannot render fails)."""
    session.install("-e", ".[http,client,docs]")
    session.run("python", "-m", "llamaswitch._reference", "--check")
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The performance scripts in bench/ (they print medians and ratios)."""
    session.install("-e", ".[http,tune,test]")
    for script in sorted(__import__("pathlib").Path("bench").glob("bench_*.py")):
        session.run("python", str(script))
