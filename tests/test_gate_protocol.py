"""The gate's ASCII protocol both ways, and its config: one model per driver behind the flat `gate:` section."""

import logging
import warnings

import pytest
from pydantic import ValidationError

from edge.core.config import (
    GATE_DRIVERS,
    GateConfig,
    LogGateConfig,
    ModbusGateConfig,
    SerialGateConfig,
    load_station_config,
    reference_markdown,
)
from edge.core.errors import BadInput
from edge.gate import (
    Ack,
    Alarm,
    Encoder,
    Heartbeat,
    LineProtocol,
    Part,
    Reject,
    Speed,
    open_driver,
)
from edge.gate.drivers import LogDriver, ModbusDriver, SerialDriver

DEFAULT = LineProtocol.of(GateConfig(ack_pattern="ACK {seq}"))


@pytest.mark.parametrize("message, line", [
    (Reject(7, 1, 50), "REJ 7 1 50\r\n"), (Heartbeat(3), "HB 3\r\n"), (Alarm("4 consecutive rejects (limit 3)"),
                                                                        "STOP 4 consecutive rejects (limit 3)\r\n")])
def test_station_lines_are_rendered_from_the_templates_and_parsed_back(message, line):
    assert DEFAULT.line(message) == line
    assert DEFAULT.from_station(line) == DEFAULT.from_station(line.strip()) == message
    assert DEFAULT.from_plc(line) is None


def test_custom_templates_with_format_specs_parse_back_and_other_lines_are_none():
    protocol = LineProtocol.of(GateConfig(reject_template="R{seq:06d}/{lane:>3}/{pulse_ms}|{seq}\n",
                                          heartbeat_template="<{count:+d}>\n", alarm_template="{reason}!\n"))
    for message in (Reject(7, 1, 50), Heartbeat(12), Alarm("jam")):
        assert protocol.from_station(protocol.line(message)) == message
    assert protocol.line(Reject(7, 1, 50)) == "R000007/  1/50|7\n"
    assert protocol.from_station("REJ 7 1 50") is None  # the default template's line is not this one's
    assert DEFAULT.from_station("R000007/  1/50|7") is None and DEFAULT.from_station("REJ x 1 50") is None


def test_plc_lines_speed_and_acks(caplog):
    assert DEFAULT.from_plc("SPD 400\r\n") == Speed(400.0) and DEFAULT.line(Speed(12.5)) == "SPD 12.5\r\n"
    assert DEFAULT.from_plc(DEFAULT.line(Ack(31))) == Ack(31) and DEFAULT.line(Ack(31)) == "ACK 31\r\n"
    assert DEFAULT.from_plc("ACK x") is None and DEFAULT.from_plc("ACK 31 extra") is None
    with caplog.at_level(logging.WARNING):
        for line in ("SPD fast", "SPD -3", "SPD 0", "SPD nan", "SPD inf", "SPD"):
            assert DEFAULT.from_plc(line) is None
    assert sum("malformed speed line" in r.message for r in caplog.records) == 6
    assert DEFAULT.from_plc("ENC 4294967295\r\n") == Encoder(4294967295) and DEFAULT.line(Encoder(7)) == "ENC 7\r\n"
    with caplog.at_level(logging.WARNING):
        assert DEFAULT.from_plc("ENC") is None and DEFAULT.from_plc("ENC 1.5") is None
    assert sum("expected 'ENC <integer>'" in r.message for r in caplog.records) == 2
    assert DEFAULT.from_plc("PART 17") == Part(17) and DEFAULT.line(Part(3)) == "PART 3\r\n"


def test_without_an_ack_pattern_there_are_no_acks():
    protocol = LineProtocol.of(GateConfig())
    assert protocol.from_plc("ACK 3") is None
    with pytest.raises(ValueError, match="no ack_pattern"):
        protocol.line(Ack(3))


def test_the_section_is_validated_as_the_model_of_its_driver():
    assert type(GateConfig()) is LogGateConfig and GateConfig().driver == "log"
    assert type(GateConfig(driver="serial", port="/dev/ttyUSB0")) is SerialGateConfig
    assert type(GateConfig(driver="modbus", port="/dev/ttyUSB0")) is ModbusGateConfig
    assert isinstance(GateConfig(driver="modbus", port="p"), GateConfig)
    assert {name: type(open_driver(GateConfig(driver=name, port="p"))) for name in GATE_DRIVERS} == {
        "serial": SerialDriver, "modbus": ModbusDriver, "log": LogDriver}


def _load(tmp_path, gate: dict):
    path = tmp_path / "station.yaml"
    path.write_text(f"model: {{path: default}}\nsource: {{uri: x}}\ngate: {gate!r}\n")
    return load_station_config(path)


@pytest.mark.parametrize("gate, message", [
    ({"driver": "serial", "port": "p", "modbus_address": 10}, "gate.modbus_address: unknown key for driver serial"),
    ({"driver": "modbus", "port": "p", "ack_pattern": "ACK {seq}"},
     ("gate.ack_pattern: unknown key for driver modbus (the PLC's response to each write is its ack; "
      "ack_timeout_ms and ack_retries apply to it)")),
    ({"driver": "modbus", "port": "p", "reject_template": "R{seq}"}, "gate.reject_template: unknown key for driver modbus"),
    ({"driver": "serial", "port": "p", "baudrat": 9600}, "gate.baudrat: unknown key for driver serial"),
    ({"driver": "rs485"}, "gate.driver: expected 'serial', 'modbus' or 'log', got 'rs485'"),
    ({"driver": "serial"}, "gate: driver serial needs gate.port"),
    ({"driver": "serial", "port": "p", "baudrate": "9600"}, "gate.baudrate: expected an integer, got '9600'"),
    ({"driver": "serial", "port": "p", "timing": "encoder", "distance_mm": 300}, "gate: timing encoder needs gate.counts_per_mm"),
    ({"driver": "modbus", "port": "p", "timing": "encoder", "distance_mm": 300, "counts_per_mm": 10},
     "gate: timing encoder: the modbus driver reads no encoder (use driver serial, whose PLC sends 'ENC <count>' "
     "lines, or let the PLC track the part: timing immediate)"),
])
def test_a_key_of_another_driver_or_a_bad_value_is_one_clear_line(tmp_path, gate, message):
    with pytest.raises(BadInput) as info:
        _load(tmp_path, gate)
    assert str(info.value) == f"{tmp_path / 'station.yaml'}: {message}"


def test_the_dry_run_takes_every_drivers_keys_and_the_section_may_be_left_out(tmp_path):
    config = _load(tmp_path, {"driver": "log", "modbus_address": 3, "ack_pattern": "ACK {seq}", "baudrate": 9600})
    assert (config.gate.modbus_address, config.gate.ack_pattern) == (3, "ACK {seq}")
    (tmp_path / "bare.yaml").write_text("model: {path: default}\nsource: {uri: x}\n")
    assert type(load_station_config(tmp_path / "bare.yaml").gate) is LogGateConfig


def test_each_drivers_section_round_trips_through_its_dump(tmp_path):
    for gate in ({"driver": "serial", "port": "p", "ack_pattern": "A{seq}"}, {"driver": "modbus", "port": "p"}, {}):
        config = _load(tmp_path, gate)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pydantic warns when it serializes a value as another type
            dumped = config.model_dump()
        assert dumped["gate"] == config.gate.model_dump() and type(config.model_validate(dumped).gate) is type(config.gate)


def test_a_direct_construction_refuses_the_same_way():
    with pytest.raises(ValidationError, match="unknown key for driver serial"):
        GateConfig(driver="serial", port="p", modbus_reject="coil")
    with pytest.raises(ValidationError, match=r"unknown placeholder \{sq\} \(use \{seq\}, \{lane\}, \{pulse_ms\}, \{part\}\)"):
        GateConfig(reject_template="REJ {sq}")


def test_the_reference_lists_every_key_of_every_driver_and_which_drivers_take_it():
    rows = {line.split("|")[1].strip(" `"): line for line in reference_markdown().splitlines() if line.startswith("| `gate.")}
    keys = {key for model in GATE_DRIVERS.values() for key in model.model_fields}
    assert set(rows) == {f"gate.{key}" for key in keys}
    assert "| serial, log: line sent per reject |" in rows["gate.reject_template"]
    assert "| modbus, log: reject coil/register of lane L is this + L |" in rows["gate.modbus_address"]
    assert "| `log` |" in rows["gate.driver"] and "| 0.2 | first wait" in rows["gate.reconnect_initial_s"]
    assert reference_markdown() == reference_markdown()
