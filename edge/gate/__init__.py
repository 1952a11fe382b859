"""The reject gate: when to fire (edge.gate.gate.Gate) and over which wire (edge.gate.drivers)."""

from edge.gate.drivers import Driver, GateLost, LogDriver, ModbusDriver, SerialDriver, open_driver
from edge.gate.gate import ALL_LANES, Gate, Outcome, RejectCommand

__all__ = ["ALL_LANES", "Driver", "Gate", "GateLost", "LogDriver", "ModbusDriver", "Outcome", "RejectCommand",
           "SerialDriver", "open_driver"]
