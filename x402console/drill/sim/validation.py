"""Binding and validating a /generate-proof body the way gin + encoding/json + main.go do.

bind_request mirrors c.BindJSON(&ProofRequest{}): the first JSON value of the body only,
case-insensitive key matching, unknown keys ignored, null leaves a field unset, strings for the
int64 fields (or numbers for string fields) are type errors. Its error texts follow Go's so the
`Invalid request from <ip>: <err>` log lines look like the real ones.

validate_request mirrors validateProofRequest(): the same checks in the same order.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from x402console.drill.sim.gofmt import go_quote_char

STRING_FIELDS = (
    "minAmount",
    "recipientKeyX",
    "recipientKeyY",
    "maxBlockAge",
    "actualAmount",
    "senderKeyX",
    "senderKeyY",
    "signatureR8x",
    "signatureR8y",
    "signatureS",
)
INT_FIELDS = ("currentTime", "paymentTime")
ALL_FIELDS = STRING_FIELDS + INT_FIELDS

REQUIRED_ORDER = (
    "minAmount",
    "recipientKeyX",
    "recipientKeyY",
    "actualAmount",
    "senderKeyX",
    "senderKeyY",
    "signatureR8x",
    "signatureR8y",
    "signatureS",
)
LENGTH_CHECKED = ("minAmount", "recipientKeyX", "recipientKeyY")
NUMERIC_CHECKED = ("minAmount", "actualAmount", "maxBlockAge")
MAX_LEN = 100
PAST_WINDOW_S = 300
FUTURE_WINDOW_S = 60

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_JSON_WS = " \t\n\r"
_DIGITS = re.compile(r"[0-9]+")
_GO_TYPE = "main.ProofRequest"


class BindError(Exception):
    """A bind failure; str() is Go's error text."""


class _Number(str):
    """A JSON number kept as its literal, so int64 parsing follows strconv.ParseInt."""


class _BadConstant(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def _reject_constant(name: str) -> Any:
    raise _BadConstant(name)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, _Number):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _container_at(doc: str, pos: int) -> str:
    """Which container ('{' or '[') is open at pos; decides Go's 'after ...' wording."""
    stack: list[str] = []
    in_str = esc = False
    for ch in doc[:pos]:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append(ch)
        elif ch in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _syntax_error(doc: str, err: json.JSONDecodeError) -> str:
    pos = err.pos
    if pos >= len(doc):
        return "unexpected EOF"
    ch = go_quote_char(doc[pos])
    msg = err.msg
    if msg.startswith("Unterminated string"):
        return "unexpected EOF"
    if msg.startswith("Invalid control character"):
        return f"invalid character {ch} in string literal"
    if msg.startswith("Invalid \\uXXXX"):
        return f"invalid character {ch} in \\u hexadecimal character escape"
    if msg.startswith("Invalid \\escape"):
        return f"invalid character {go_quote_char(doc[pos + 1]) if pos + 1 < len(doc) else ch} in string escape code"
    if msg.startswith("Expecting property name"):
        return f"invalid character {ch} looking for beginning of object key string"
    if msg.startswith("Expecting ':'"):
        return f"invalid character {ch} after object key"
    if msg.startswith("Expecting ','"):
        if _container_at(doc, pos) == "[":
            return f"invalid character {ch} after array element"
        return f"invalid character {ch} after object key:value pair"
    return f"invalid character {ch} looking for beginning of value"


def _scrub(value: Any) -> Any:
    # Go turns a lone surrogate escape such as "\ud800" into U+FFFD.
    if isinstance(value, str) and not isinstance(value, _Number):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


def _field_for(key: str) -> str | None:
    if key in ALL_FIELDS:
        return key
    folded = key.casefold()
    for name in ALL_FIELDS:
        if name.casefold() == folded:
            return name
    return None


def empty_request() -> dict[str, Any]:
    req: dict[str, Any] = {f: "" for f in STRING_FIELDS}
    req.update({f: 0 for f in INT_FIELDS})
    return req


def bind_request(body: bytes) -> dict[str, Any]:
    """The ProofRequest gin would bind from `body`; raises BindError with Go's message."""
    doc = body.decode("utf-8", "replace")
    start = len(doc) - len(doc.lstrip(_JSON_WS))
    if start >= len(doc):
        raise BindError("EOF")
    decoder = json.JSONDecoder(
        object_pairs_hook=lambda pairs: ("__pairs__", pairs),
        parse_int=_Number,
        parse_float=_Number,
        parse_constant=_reject_constant,
    )
    try:
        value, _end = decoder.raw_decode(doc, start)
    except json.JSONDecodeError as exc:
        raise BindError(_syntax_error(doc, exc)) from None
    except _BadConstant as exc:
        where = "in numeric literal" if exc.name.startswith("-") else "looking for beginning of value"
        ch = go_quote_char(exc.name.lstrip("-")[0])
        raise BindError(f"invalid character {ch} {where}") from None
    except RecursionError:
        raise BindError("exceeded max depth") from None

    req = empty_request()
    if value is None:
        return req
    if not (isinstance(value, tuple) and value[:1] == ("__pairs__",)):
        raise BindError(f"json: cannot unmarshal {_value_kind(value)} into Go value of type {_GO_TYPE}")
    first_error: str | None = None
    for key, raw in value[1]:
        field = _field_for(key)
        if field is None or raw is None:
            continue
        kind = _value_kind(raw)
        if field in STRING_FIELDS:
            if kind == "string":
                req[field] = _scrub(raw)
                continue
            err = _type_error(kind, field, "string")
        else:
            if kind == "number" and _is_int64(raw):
                req[field] = int(raw)
                continue
            shown = f"number {raw}" if kind == "number" else kind
            err = _type_error(shown, field, "int64")
        first_error = first_error or err
    if first_error:
        raise BindError(first_error)
    return req


def _value_kind(value: Any) -> str:
    if isinstance(value, tuple):
        return "object"
    return _json_kind(value)


def _type_error(value_desc: str, field: str, go_type: str) -> str:
    return f"json: cannot unmarshal {value_desc} into Go struct field ProofRequest.{field} of type {go_type}"


def _is_int64(literal: str) -> bool:
    if not re.fullmatch(r"-?[0-9]+", literal):
        return False
    return _INT64_MIN <= int(literal) <= _INT64_MAX


def validate_request(req: dict[str, Any], now: float | None = None) -> tuple[str, str] | None:
    """(field, message) of the first failing check, or None."""
    for field in REQUIRED_ORDER:
        if req[field] == "":
            return field, f"{field} is required"
    for field in LENGTH_CHECKED:
        if len(req[field].encode("utf-8", "surrogateescape")) > MAX_LEN:
            return field, f"{field} too long (max {MAX_LEN} chars)"
    for field in NUMERIC_CHECKED:
        if not _DIGITS.fullmatch(req[field]):
            return field, f"{field} must be numeric"
    for field in ("minAmount", "actualAmount"):
        if req[field] == "0":
            return field, f"{field} must be positive"
    now_s = int(time.time() if now is None else now)
    for field in ("currentTime", "paymentTime"):
        if req[field] < now_s - PAST_WINDOW_S or req[field] > now_s + FUTURE_WINDOW_S:
            return field, f"{field} must be within last 5 minutes"
    if req["paymentTime"] > req["currentTime"]:
        return "paymentTime", "paymentTime cannot be in the future"
    return None
