"""The examples in the docstrings run, and say what they show.

Every module of ``llamaswitch`` and ``llamaswitch_http`` is imported and its doctests
(found with ``doctest.DocTestFinder``, the module's own and its classes' and functions')
run as one test per module. Examples that need a running service or real models are
marked ``# doctest: +SKIP`` where they stand.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import llamaswitch
import llamaswitch_http

#: Modules that run something when imported.
_NOT_IMPORTED = {"llamaswitch.__main__"}


def _module_names() -> list[str]:
    names = []
    for package in (llamaswitch, llamaswitch_http):
        names.append(package.__name__)
        prefix = f"{package.__name__}."
        names += [info.name for info in pkgutil.walk_packages(package.__path__, prefix)]
    return sorted(set(names) - _NOT_IMPORTED)


MODULES = _module_names()
_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _examples(name: str) -> list[doctest.DocTest]:
    """The module's doctests (the finder skips what it imported from elsewhere)."""
    module = importlib.import_module(name)
    return [t for t in doctest.DocTestFinder().find(module, name) if t.examples]


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_of_each_module_hold(name: str) -> None:
    runner = doctest.DocTestRunner(optionflags=_FLAGS)
    for test in _examples(name):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} doctest example(s) of {name} failed (above)"


def test_the_examples_are_found_where_they_are_written() -> None:
    counted = {name: sum(len(t.examples) for t in _examples(name)) for name in MODULES}
    # Modules known to carry examples: the finder must see them, or the test above
    # would pass by running nothing.
    for name in ("llamaswitch._vocabulary", "llamaswitch._wire", "llamaswitch._text",
                 "llamaswitch.servers.tickets", "llamaswitch.servers.config",
                 "llamaswitch._settings"):  # fmt: skip
        assert counted[name] > 0, name
    assert sum(counted.values()) > 30
