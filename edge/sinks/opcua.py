"""The station as an OPC UA server (asyncua): its state as variables, rejects and alarms as events.

    server = OpcUaServer(config.opcua, status, acknowledge)   # serves opc.tcp://HOST:PORT/station/
    server.verdict(frame, prob, verdict, record)              # a Sink: a queue put, never a wait
    server.close()

Objects/Station holds one object per section of the station's typed state (edge.core.state:
Counters, Gate, Camera, Disk...) with a variable per field, refreshed every `update_s`, so a new
field there is a new variable here; LastVerdict (Seq, Verdict, Reason, Score, Time) changes with
every recorded frame; Heartbeat counts the gate's heartbeats. Every reject raises a RejectEvent
(Seq, Verdict, Reason) and a raised stop-line alarm an AlarmEvent, both from Station. Every
variable is read-only; with `allow_acknowledge` the method Station.AcknowledgeAlarm clears the
consecutive-reject alarm. The server runs on its own thread and event loop; it never holds up
inspection: a full queue drops (and counts) what it cannot take.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from edge.core.config import OpcUaConfig
from edge.core.errors import BadInput
from edge.core.state import StationState
from edge.inference.decision import Verdict
from edge.sources import Frame

log = logging.getLogger(__name__)

NAMESPACE = "urn:inspection-station"
QUEUE = 1000


def _value(value, annotation: str):
    """A state field as an OPC UA value: None as NaN, -1 or "" by the field's type; dicts as JSON text."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if value is not None:
        return value
    return float("nan") if "float" in annotation else -1 if "int" in annotation else ""


class OpcUaServer:
    """An asyncua server fed by the station (see the module docstring)."""

    def __init__(self, config: OpcUaConfig, status: Callable[[], StationState], acknowledge: Callable[[], None]):
        try:
            import asyncua  # noqa: F401
        except ImportError:
            raise BadInput("opcua.port needs asyncua: pip install .[opcua]") from None
        self.cfg, self.status, self.acknowledge = config, status, acknowledge
        self.url = f"opc.tcp://{config.host}:{config.port}/station/"
        self.dropped = 0
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE)
        self.ready, self.error = threading.Event(), None
        self.thread = threading.Thread(target=self._run, name="opcua", daemon=True)
        self.thread.start()
        if not self.ready.wait(30) or self.error:
            raise BadInput(f"opcua: cannot serve {self.url}: {self.error or 'no answer in 30 s'}")

    # --- the station's side ----------------------------------------------------------------------

    sheddable = False  # a queue put: LastVerdict and the events stay with every frame

    def verdict(self, frame: Frame, prob: np.ndarray | None, verdict: Verdict, record: dict) -> None:
        """Called by the output thread for every recorded frame; only a queue put."""
        self.loop.call_soon_threadsafe(self._put, record)

    def _put(self, record: dict) -> None:
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1

    def close(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, None)
            self.thread.join(10)

    # --- the server's thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._serve())
        except Exception as exc:  # noqa: BLE001 (start-up failures are reported to __init__; later ones logged)
            self.error = str(exc) or type(exc).__name__
            if self.ready.is_set():
                log.exception("opcua server stopped")
            self.ready.set()
        finally:  # the sessions of clients still connected end with the loop
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    async def _serve(self) -> None:
        from asyncua import Server, ua

        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name("Inspection station")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE)
        station = await server.nodes.objects.add_object(idx, "Station")
        state = self.status()
        self.variables = await self._add_state(idx, station, state)
        last = await station.add_object(idx, "LastVerdict")
        self.last = {name: await last.add_variable(idx, name, value) for name, value in
                     (("Seq", -1), ("Verdict", ""), ("Reason", ""), ("Score", float("nan")), ("Time", ""))}
        self.heartbeat = await station.add_variable(idx, "Heartbeat", state.gate.heartbeats)
        fields = [("Seq", ua.VariantType.Int64), ("Verdict", ua.VariantType.String), ("Reason", ua.VariantType.String)]
        reject = await server.create_custom_event_type(idx, "RejectEvent", ua.ObjectIds.BaseEventType, fields)
        alarm = await server.create_custom_event_type(idx, "AlarmEvent", ua.ObjectIds.BaseEventType,
                                                      [("Reason", ua.VariantType.String)])
        self.rejects = await server.get_event_generator(reject, station)
        self.alarms = await server.get_event_generator(alarm, station)
        if self.cfg.allow_acknowledge:
            await station.add_method(idx, "AcknowledgeAlarm", self._acknowledge, [], [])
        async with server:
            self.ready.set()
            await self._feed(state)

    async def _add_state(self, idx: int, parent, state) -> list:
        """An object per nested dataclass and a variable per field: [(variable, path, annotation)]."""
        added = []
        for field in dataclasses.fields(state):
            value = getattr(state, field.name)
            if dataclasses.is_dataclass(value):
                child = await parent.add_object(idx, field.name)
                added += [(v, (field.name, *path), a) for v, path, a in await self._add_state(idx, child, value)]
            else:
                annotation = str(field.type)
                added.append((await parent.add_variable(idx, field.name, _value(value, annotation)), (field.name,),
                              annotation))
        return added

    async def _feed(self, state: StationState) -> None:
        next_update, alarmed = time.monotonic(), state.gate.alarmed
        while True:
            try:
                record = await asyncio.wait_for(self.queue.get(), max(next_update - time.monotonic(), 0.001))
            except asyncio.TimeoutError:
                record = ...
            if record is None:
                return
            if isinstance(record, dict):
                await self._record(record)
            if time.monotonic() >= next_update:
                next_update = time.monotonic() + self.cfg.update_s
                state = self.status()
                await self._write_state(state)
                if state.gate.alarmed and not alarmed:
                    await self.alarms.trigger(message="stop-line alarm")
                alarmed = state.gate.alarmed

    async def _record(self, record: dict) -> None:
        values = {"Seq": record["seq"], "Verdict": record["verdict"], "Reason": record["reason"],
                  "Score": float(record.get("score", float("nan"))), "Time": record["time"]}
        for name, value in values.items():
            await self.last[name].write_value(value)
        if record["verdict"] != "accept":
            event = self.rejects.event
            event.Seq, event.Verdict, event.Reason = record["seq"], record["verdict"], record["reason"]
            await self.rejects.trigger(message=f"reject {record['seq']}: {record['reason']}")

    async def _write_state(self, state: StationState) -> None:
        for variable, path, annotation in self.variables:
            value = state
            for name in path:
                value = None if value is None else getattr(value, name)
            try:
                await variable.write_value(_value(value, annotation))
            except Exception:  # noqa: BLE001 (a value whose type changed, e.g. None then a dataclass: skipped)
                log.debug("opcua: %s not updated", ".".join(path), exc_info=True)
        await self.heartbeat.write_value(state.gate.heartbeats)

    async def _acknowledge(self, parent) -> list:
        self.acknowledge()
        return []
