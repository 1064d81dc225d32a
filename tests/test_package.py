"""The package surface: every public name resolves, and the library never needs aiohttp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


_WITHOUT_RAY = """
import asyncio, sys
from pathlib import Path
sys.modules["ray"] = None  # as if the ray extra were not installed: importing it fails
from llamaswitch import AsyncLlamaSwitch, Settings
from llamaswitch._errors import DependencyMissingError
from llamaswitch_http import create_app

async def main():
    root = Path(sys.argv[1])
    (root / "models").mkdir()
    settings = Settings(models_dir=root / "models", state_dir=root / "state")
    create_app(settings=settings)
    async with AsyncLlamaSwitch(settings) as ls:
        assert await ls.hosts() == []
        assert ls.gateway.serving_ids() == []
    head = AsyncLlamaSwitch(Settings(models_dir=root / "models", state_dir=root / "head",
                                     cluster="ray"))
    try:
        await head.open()
    except DependencyMissingError as exc:
        print("refused:", exc.extra, exc)
    else:
        raise AssertionError("a cluster head opened without Ray")
    finally:
        await head.close()

asyncio.run(main())
"""


def test_a_single_machine_needs_no_ray_and_a_cluster_head_says_which_extra(
    tmp_path: Path,
) -> None:
    done = subprocess.run([sys.executable, "-c", _WITHOUT_RAY, str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "refused: ray the cluster mode needs the ray extra" in done.stdout
    assert "pip install 'llamaswitch[ray]'" in done.stdout
