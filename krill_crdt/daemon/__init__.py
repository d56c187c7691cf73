"""The daemon: ``krill serve``'s TOML config, logging, systemd integration and demo.

* :mod:`.config`: the TOML file and ``KRILL_SECTION_KEY`` variables into a ``PeerConfig``;
* :mod:`.template`: the commented config and the swarm key ``krill init`` writes;
* :mod:`.serve`: a peer run until SIGTERM/SIGINT;
* :mod:`.systemd`: ``READY=1``, ``WATCHDOG=1`` and ``STOPPING=1`` to systemd;
* :mod:`.logging`: ``[log] level`` and ``format`` applied to the ``krill.*`` loggers;
* :mod:`.demo`: the demo project and its simulated sensor.
"""

from __future__ import annotations

from .config import ConfigError, load_config, schema
from .systemd import Notifier

__all__ = ["ConfigError", "Notifier", "load_config", "schema"]
