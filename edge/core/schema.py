"""Shared pieces of the pydantic schemas of the config file and the model card.

    stopbits: one_of(1, 1.5, 2)              # a Literal that refuses true and false
    raise BadInput(f"{path}: {describe(exc.errors()[0])}")   # "decision.min_area_px: expected an integer, got True"
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

KINDS = {"int_parsing": "an integer", "int_type": "an integer", "float_parsing": "a number", "float_type": "a number",
         "bool_parsing": "true or false", "bool_type": "true or false", "string_type": "a string",
         "finite_number": "a finite number", "dict_type": "a mapping", "model_type": "a mapping",
         "dataclass_type": "a mapping", "tuple_type": "a list", "list_type": "a list"}


def one_of(*values: Any) -> Any:
    """Literal[values] (two or more), refusing true and false: pydantic's Literal[0, 1] takes true, even strict."""
    expected = f"{', '.join(map(repr, values[:-1]))} or {values[-1]!r}"

    def refuse_bool(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return value

    return Annotated[Literal[values], BeforeValidator(refuse_bool)]


def describe(error: dict) -> str:
    """One pydantic error as one line: the key's dotted path, then what is wrong with its value."""
    key, kind, msg = ".".join(str(part) for part in error["loc"]), error["type"], error["msg"]
    if kind == "value_error":
        text = msg.removeprefix("Value error, ")
    elif kind == "extra_forbidden":
        text = "unknown key"
    elif kind == "missing":
        text = "missing"
    elif kind in KINDS:
        text = f"expected {KINDS[kind]}, got {error['input']!r}"
    elif msg.startswith("Input should be "):
        text = f"expected {msg.removeprefix('Input should be ')}, got {error['input']!r}"
    else:  # "String should have at least 8 characters", ...
        text = f"{msg[0].lower()}{msg[1:]}, got {error['input']!r}"
    return f"{key}: {text}" if key else text
