"""Node-type processors: the behaviour of each node type when its chain runs on its host.

``base`` holds the interface (:class:`Processor`, :class:`Context`, :class:`Outcome`),
``registry`` maps every node type to its processor, and the processors live by role:
``data`` (data points and their filters), ``triggers``, ``executors``, ``devices`` (pins,
serial devices, MQTT bridges) and ``structural`` (servers, clients, projects, peers).
"""

from __future__ import annotations

from .base import Context, Outcome, Processor, ProcessorError, ProcessorHost
from .data import DataPointHost
from .devices import GpioBackend, MqttPublisher, SerialSender
from .registry import REGISTRY, make_registry
from .triggers import Scheduled, check_token, hash_token, parse_body

__all__ = [
    "REGISTRY",
    "Context",
    "DataPointHost",
    "GpioBackend",
    "MqttPublisher",
    "Outcome",
    "Processor",
    "ProcessorError",
    "ProcessorHost",
    "Scheduled",
    "SerialSender",
    "check_token",
    "hash_token",
    "make_registry",
    "parse_body",
]
