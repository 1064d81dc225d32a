"""llamaswitch_http: the REST service over llamaswitch, a thin aiohttp adapter.

Each handler parses its request, makes one call into
:class:`~llamaswitch.AsyncLlamaSwitch` and answers the seed API's envelope
``{"success", "message", "data", "error"}``. Install with ``pip install llamaswitch[http]``.

>>> from llamaswitch import Settings
>>> # run_server(Settings.from_env())        # what `llamaswitch serve` does
>>> app = create_app(settings=Settings(models_dir="models"))   # to embed or test
"""

from __future__ import annotations

from llamaswitch_http._app import create_app
from llamaswitch_http._serve import run_server

__all__ = ["create_app", "run_server"]
