"""Model servers: their config, the checks a launch makes, their status and the supervisor.

Internal modules; the public names are importable from :mod:`llamaswitch`.

- :mod:`~llamaswitch.servers.config`: :class:`ServerConfig` and its argv.
- :mod:`~llamaswitch.servers.checks`: what a launch checks before it acts.
- :mod:`~llamaswitch.servers.fit`: where a launch turns llama.cpp's memory fit off.
- :mod:`~llamaswitch.servers.supervisor`: :class:`ServerSupervisor`.
"""
