"""Wires to the PLC, one plugin per file, each on its own config model (edge.core.config.GATE_DRIVERS):
serial ASCII lines, Modbus RTU, or a dry-run log. Any failure of a wire raises GateLost; the gate
reopens it with backoff.

    driver = open_driver(config.gate)    # the driver gate.driver names
"""

from __future__ import annotations

from collections.abc import Callable

from edge.core.config import GateConfig
from edge.gate.drivers.base import Driver, GateLost
from edge.gate.drivers.log import LogDriver
from edge.gate.drivers.modbus import ModbusDriver
from edge.gate.drivers.serial import SerialDriver

DRIVERS: dict[str, Callable[..., Driver]] = {"serial": SerialDriver, "modbus": ModbusDriver, "log": LogDriver}


def open_driver(config: GateConfig) -> Driver:
    """The driver `gate.driver` names, built on its config."""
    return DRIVERS[config.driver](config)


__all__ = ["DRIVERS", "Driver", "GateLost", "LogDriver", "ModbusDriver", "SerialDriver", "open_driver"]
