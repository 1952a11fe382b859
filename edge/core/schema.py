"""Shared pieces of the pydantic schemas of the config file and the model card.

    stopbits: one_of(1, 1.5, 2)              # a Literal that refuses true and false
    raise BadInput(f"{path}: {describe(exc.errors()[0])}")   # "decision.min_area_px: expected an integer, got True"
    raise key_error("modbus_address", 10, "extra_forbidden", "unknown key for driver serial")  # in a validator
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError

KINDS = {"int_parsing": "an integer", "int_type": "an integer", "float_parsing": "a number", "float_type": "a number",
         "bool_parsing": "true or false", "bool_type": "true or false", "string_type": "a string",
         "finite_number": "a finite number", "dict_type": "a mapping", "model_type": "a mapping",
         "dataclass_type": "a mapping", "tuple_type": "a list", "list_type": "a list"}


def either(values: Any) -> str:
    """'a', 'b' or 'c': the values (two or more) a key takes, as an error message lists them."""
    *first, last = values
    return f"{', '.join(map(repr, first))} or {last!r}"


def one_of(*values: Any) -> Any:
    """Literal[values] (two or more), refusing true and false: pydantic's Literal[0, 1] takes true, even strict."""
    expected = either(values)

    def refuse_bool(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return value

    return Annotated[Literal[values], BeforeValidator(refuse_bool)]


def key_error(key: str, value: Any, kind: str, message: str) -> ValidationError:
    """An error of `kind` at `key` of the mapping being validated. Raised in a validator, pydantic reports it
    at the key (under the enclosing section); `describe` shows the message (extra_forbidden: "unknown key ...")."""
    error = PydanticCustomError(kind, "{message}", {"message": message})
    return ValidationError.from_exception_data("config", [{"type": error, "loc": (key,), "input": value}])


def describe(error: dict) -> str:
    """One pydantic error as one line: the key's dotted path, then what is wrong with its value."""
    key, kind, msg = ".".join(str(part) for part in error["loc"]), error["type"], error["msg"]
    if kind == "value_error":
        text = msg.removeprefix("Value error, ")
    elif kind == "extra_forbidden":  # pydantic's, or a key_error that says more ("unknown key for driver serial")
        text = msg if "ctx" in error else "unknown key"
    elif kind == "missing":
        text = "missing"
    elif kind in KINDS:
        text = f"expected {KINDS[kind]}, got {error['input']!r}"
    elif msg.startswith("Input should be "):
        text = f"expected {msg.removeprefix('Input should be ')}, got {error['input']!r}"
    else:  # "String should have at least 8 characters", ...
        text = f"{msg[0].lower()}{msg[1:]}, got {error['input']!r}"
    return f"{key}: {text}" if key else text
