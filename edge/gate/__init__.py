"""The reject gate: when to fire (edge.gate.scheduler, on an injected clock; edge.gate.belt, the belt's
position from encoder counts), the thread and the wire (edge.gate.gate.Gate), the ASCII lines both ways
(edge.gate.protocol) and the wires (edge.gate.drivers)."""

from edge.gate.belt import BeltTracker
from edge.gate.drivers import (
           Driver,
           GateLost,
           LogDriver,
           ModbusDriver,
           SerialDriver,
           open_driver,
)
from edge.gate.gate import Gate
from edge.gate.protocol import (
           Ack,
           Alarm,
           Encoder,
           Heartbeat,
           LineProtocol,
           Message,
           Part,
           Reject,
           Speed,
)
from edge.gate.scheduler import ALL_LANES, Outcome, RejectCommand, Scheduler

__all__ = ["ALL_LANES", "Ack", "Alarm", "BeltTracker", "Driver", "Encoder", "Gate", "GateLost", "Heartbeat", "LineProtocol", "LogDriver", "Message",
           "ModbusDriver", "Outcome", "Part", "Reject", "RejectCommand", "Scheduler", "SerialDriver", "Speed", "open_driver"]
