"""Many hosts over a Ray cluster (docs/cluster.md): one agent per host, one head.

- :mod:`~llamaswitch.cluster.connection`: Ray itself, imported only when a cluster is
  used (the ``ray`` extra), and the head's connection as a driver;
- :mod:`~llamaswitch.cluster.messages`: what agents and the head tell each other;
- :mod:`~llamaswitch.cluster.agent`: the actor that owns one host's llamaswitch;
- :mod:`~llamaswitch.cluster.host`: the head's mirror of one host (its servers and
  catalog, as a gateway uses them);
- :mod:`~llamaswitch.cluster.head`: the head's gateway, which places each model on one
  host and forwards its traffic straight to that host's llama-server.

Nothing here is imported by the single-machine code: a machine without Ray never needs it.
"""
