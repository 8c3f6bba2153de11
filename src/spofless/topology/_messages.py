"""Schema errors in the tool's own words: what pydantic found, said for a topology's author.

No library jargon reaches the user: "Value error, ..." loses its prefix,
"Extra inputs are not permitted" becomes "unknown field 'x'" with the closest
known field, "Input should be ..." becomes "expected ...", and fields whose
type is a union (`instances`, `min_up`) get one sentence naming what fits.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

Loc = tuple[str | int, ...]

# Fields whose union type makes pydantic report one error per branch: say what fits.
EXPECTED = {
    "instances": "expected a count (a whole number, at least 1) or a list of host names",
    "min_up": "expected a whole number (at least 1) or 'majority'",
    "zones": "expected a list of zone names or a mapping of zone name to settings",
    "needs": "expected a list of component names",
    "entry": "expected a non-empty list of component names",
}

NAME_RULE = (
    "must be a name of letters, digits, '.', '-' and '_' (starting with a letter or digit), "
    "at most 63 long"
)


# Fields with a pattern: what a value must look like, in words.
PATTERN_RULES = {
    "hash_key": "expected source, path, header:<name> or cookie:<name>",
    "max_lag": "expected a size in bytes such as 16MB, 512kB or 1048576",
    "interface": "expected a network interface name such as eth0 (at most 15 characters)",
}


def message(err: Any, model: type[BaseModel] | None, loc: Loc) -> str:
    """One pydantic error (`err` from `ValidationError.errors()`) as a sentence."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    field = err["loc"][-1] if err["loc"] else ""
    if kind == "missing":
        return f"missing required field '{field}'"
    if kind == "extra_forbidden":
        known = fields_at(model, loc[:-1]) if model is not None else []
        return f"unknown field '{field}'{suggest(str(field), known)}"
    if kind == "value_error":
        if "error" in ctx:
            return str(ctx["error"])
        return str(err["msg"]).removeprefix("Value error, ")
    if kind == "assertion_error":
        return str(err["msg"]).removeprefix("Assertion failed, ")
    if kind == "string_pattern_mismatch":
        name = next((p for p in reversed(loc) if isinstance(p, str)), "")
        if name in PATTERN_RULES:
            return PATTERN_RULES[name]
        if "A-Za-z0-9" in str(ctx.get("pattern", "")):
            return NAME_RULE
        return "is not written the way this field expects (see its documentation)"
    simple = {
        "int_parsing": "expected a whole number",
        "int_type": "expected a whole number",
        "int_from_float": "expected a whole number",
        "float_parsing": "expected a number",
        "float_type": "expected a number",
        "bool_parsing": "expected true or false",
        "bool_type": "expected true or false",
        "string_type": "expected text",
        "dict_type": "expected a mapping",
        "model_type": "expected a mapping",
        "model_attributes_type": "expected a mapping",
        "list_type": "expected a list",
    }
    if kind in simple:
        return simple[kind]
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": ("ge", "at least"),
            "greater_than": ("gt", "more than"),
            "less_than_equal": ("le", "at most"),
            "less_than": ("lt", "less than"),
        }[kind]
        return f"must be {words[1]} {ctx.get(words[0])}"
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length" if kind == "too_short" else "max_length")
        return f"must have at {'least' if kind == 'too_short' else 'most'} {n} item(s)"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    msg = str(err["msg"])
    if msg.startswith("Input should be "):
        return "expected " + msg.removeprefix("Input should be ")
    return msg


def combine(loc: Loc, msgs: list[str]) -> str:
    """One readable message for the problems found at one field (union branches)."""
    name = next((part for part in reversed(loc) if isinstance(part, str)), "")
    if any(m.startswith(("missing required", "unknown field")) for m in msgs):
        return " or ".join(msgs)
    if name in EXPECTED and (len(msgs) > 1 or msgs[0].startswith("expected")):
        return EXPECTED[name]
    if name == "availability" or (len(loc) >= 2 and loc[-2] == "availability"):
        return "an availability must be a number between 0 and 1"
    if len(msgs) > 1 and all(m.startswith("expected ") for m in msgs):
        return "expected " + " or ".join(m.removeprefix("expected ") for m in msgs)
    return "; ".join(msgs)


def suggest(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a known name is close to `name`, else ``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def fields_at(model: type[BaseModel], path: Loc) -> list[str]:
    """The field names of the model found at `path` below `model` ([] if none is)."""
    types_here: list[Any] = [model]
    for part in path:
        nxt: list[Any] = []
        for tp in _flatten(types_here):
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                if isinstance(part, str) and part in tp.model_fields:
                    nxt.append(tp.model_fields[part].annotation)
            elif typing.get_origin(tp) is list and isinstance(part, int):
                nxt.extend(typing.get_args(tp)[:1])
            elif typing.get_origin(tp) is dict and isinstance(part, str):
                nxt.extend(typing.get_args(tp)[1:2])
        types_here = nxt
    for tp in _flatten(types_here):
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return list(tp.model_fields)
    return []


def _flatten(tps: list[Any]) -> list[Any]:
    """Unions and Annotated unwrapped into the plain types they may be."""
    out: list[Any] = []
    for tp in tps:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            out.extend(_flatten([typing.get_args(tp)[0]]))
        elif origin is typing.Union or origin is types.UnionType:
            out.extend(_flatten(list(typing.get_args(tp))))
        else:
            out.append(tp)
    return out
