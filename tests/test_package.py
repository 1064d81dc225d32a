"""The package surface: every public name resolves, and the library never needs aiohttp."""

from __future__ import annotations

import subprocess
import sys

import llamaswitch


def test_every_public_name_resolves() -> None:
    for name in llamaswitch.__all__:
        assert getattr(llamaswitch, name) is not None, name


def test_public_names_are_sorted() -> None:
    assert list(llamaswitch.__all__) == sorted(llamaswitch.__all__)


def test_the_library_does_not_import_aiohttp() -> None:
    code = (
        "import sys, llamaswitch\n"
        "for name in llamaswitch.__all__: getattr(llamaswitch, name)\n"
        "import llamaswitch._cli, llamaswitch._api, llamaswitch._sync\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_version_is_known() -> None:
    assert llamaswitch.__version__.count(".") >= 2
