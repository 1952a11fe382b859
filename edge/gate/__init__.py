"""The reject gate: when to fire (edge.gate.scheduler, on an injected clock; edge.gate.belt, the belt's
position from encoder counts), the thread and the wire (edge.gate.gate.Gate), the ASCII lines both ways
(edge.gate.protocol), the wires (edge.gate.drivers), and the process of its own the station runs it in
(edge.gate.process).

    gate = open_gate(config.gate, results_log.write)   # gate.isolation: process (default) or thread
"""

from collections.abc import Callable

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


def open_gate(config, record: Callable[[dict], None]):
    """The station's gate: edge.gate.process.GateProcess (a child process owns the port), or with
    `gate.isolation: thread` a Gate thread in this process. Both take the same calls."""
    if config.isolation == "thread":
        return Gate(config, open_driver(config), record)
    from edge.gate.process import GateProcess  # not at import: `python -m edge.gate.process` imports this package first

    return GateProcess(config, record)

__all__ = ["ALL_LANES", "Ack", "Alarm", "BeltTracker", "Driver", "Encoder", "Gate", "GateLost", "Heartbeat", "LineProtocol", "LogDriver", "Message",
           "ModbusDriver", "Outcome", "Part", "Reject", "RejectCommand", "Scheduler", "SerialDriver", "Speed", "open_driver",
           "open_gate"]
