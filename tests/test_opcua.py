"""The OPC UA server, read by a real asyncua client while `station run` inspects a conveyor video."""

import asyncio

import pytest
from stations import read_log, start_with_page, stop, verdict_records, write_config

from edge.tools.local_broker import free_port
from training.surfaces import write_conveyor

asyncua = pytest.importorskip("asyncua", reason="the OPC UA server needs asyncua (the opcua extra)")
from asyncua import Client, ua  # noqa: E402


class Events:
    def __init__(self):
        self.seqs: list[int] = []

    def event_notification(self, event):
        self.seqs.append(event.Seq)


async def _read_while_running(url: str, proc, allow_acknowledge: bool) -> dict:
    """Subscribe to the reject events, read the state, try a write and the acknowledge method."""
    async with Client(url, timeout=10) as client:
        idx = await client.get_namespace_index("urn:inspection-station")
        station = await client.nodes.objects.get_child(f"{idx}:Station")
        reject_type = await client.nodes.root.get_child(
            ["0:Types", "0:EventTypes", "0:BaseEventType", f"{idx}:RejectEvent"])
        events = Events()
        subscription = await client.create_subscription(20, events)
        await subscription.subscribe_events(station, reject_type)
        frames = await station.get_child([f"{idx}:counters", f"{idx}:frames"])
        first_seq = await (await station.get_child([f"{idx}:LastVerdict", f"{idx}:Seq"])).read_value()
        try:
            await frames.write_value(ua.Variant(123, ua.VariantType.Int64))
            written = True
        except ua.UaStatusCodeError:
            written = False
        methods = [(await m.read_browse_name()).Name for m in await station.get_methods()]
        if allow_acknowledge:
            await station.call_method(f"{idx}:AcknowledgeAlarm")
        # 40 frames past the subscription and a reject event (a slow host can take a third of the video to subscribe)
        while proc.poll() is None and (await frames.read_value() < max(first_seq, 0) + 40 or not events.seqs):
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # the last events and a state refresh
        state = {"frames": await frames.read_value(),
                 "timing": await (await station.get_child([f"{idx}:gate", f"{idx}:timing"])).read_value(),
                 "last_seq": await (await station.get_child([f"{idx}:LastVerdict", f"{idx}:Seq"])).read_value()}
        return {"events": events.seqs, "first_seq": first_seq, "written": written, "methods": methods, **state}


@pytest.mark.parametrize("allow_acknowledge", [False, True])
def test_state_variables_and_reject_events_reach_a_client_and_nothing_can_be_written(tmp_path, allow_acknowledge):
    write_conveyor(tmp_path / "line.avi", frames=150, size=(120, 160), fps=15, seed=7)  # 10 s: the client reads meanwhile
    config = write_config(tmp_path, tmp_path / "line.avi", source={"realtime": True},
                          opcua={"port": free_port(), "update_s": 0.2, "allow_acknowledge": allow_acknowledge})
    proc, url = start_with_page(config, tmp_path / "station.err", serves="opcua ")
    try:
        seen = asyncio.run(_read_while_running(url, proc, allow_acknowledge))
    finally:
        stop(proc)
    records = verdict_records(tmp_path)
    # every reject recorded between the subscription and the last read (a few records' margin each side), as an
    # event; in the order recorded, not by seq: a frame dropped while an older one is inferred is recorded first
    order = [r["seq"] for r in records]
    first, last = order.index(seen["first_seq"]) if seen["first_seq"] >= 0 else 0, order.index(seen["last_seq"])
    rejects = [r["seq"] for r in records[first + 3:last - 5] if r["verdict"] != "accept"]
    assert rejects and set(rejects) <= set(seen["events"])
    assert set(seen["events"]) <= {r["seq"] for r in records if r["verdict"] != "accept"}
    assert seen["frames"] >= 40 and seen["timing"] == "immediate" and seen["last_seq"] >= 40
    assert not seen["written"]  # read-only
    assert ("AcknowledgeAlarm" in seen["methods"]) == allow_acknowledge
    acknowledged = [e for e in read_log(tmp_path) if e.get("event") == "alarm_acknowledged"]
    assert [e["by"] for e in acknowledged] == (["opcua"] if allow_acknowledge else [])
