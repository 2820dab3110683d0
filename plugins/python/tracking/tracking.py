"""The `tracking` plugin in Python: `enrich` and `validate-tracking` in one component.

Behaviour, messages and attribute order match the Rust reference in
plugins/rust/tracking; crates/plugin-engine/tests/all/conformance.rs holds them to it.

Built with componentize-py against the `plugin` world of wit/plugin.wit, which generates the
`wit_world` package at build time. WIT mapping: an export returning `result<T, plugin-error>`
returns T or raises `Err(PluginError_…(reason))`; an import returning `result` returns the ok
value or raises `Err(error)`; `option<T>` is `T | None`; tuples are Python tuples.

Config keys:
- `fields`: comma-separated core-data fields to copy
  (default `programName,checksum,customerId,customerName`).
"""

from typing import Callable, List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, core_data
from wit_world.imports.types import Event, PluginError_Reject, PluginError_Retry

DEFAULT_FIELDS = "programName,checksum,customerId,customerName"
# The longest part of an offending value quoted back in a rejection message, in characters.
MAX_SHOWN_CHARS = 64

ESCAPES = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", '"': '\\"'}


def is_digits(value: str) -> bool:
    return all("0" <= c <= "9" for c in value)


def is_alphanumeric(value: str) -> bool:
    return all(c.isascii() and c.isalnum() for c in value)


class Handler(exports.Handler):
    def validate(self, event: Event) -> None:
        program_id(event)

    def transform(self, event: Event) -> List[Event]:
        pid = program_id(event)
        try:
            record = core_data.lookup(pid)
        except Err as error:
            raise Err(PluginError_Retry(f"core data unavailable: {error.value}"))
        if record is None:
            raise Err(PluginError_Reject(f"unknown program {pid}"))
        fields = config.get("fields")
        if fields is None:
            fields = DEFAULT_FIELDS
        for field in (f.strip() for f in fields.split(",")):
            if not field:
                continue
            value = next((v for name, v in record if name == field), None)
            if value is not None:
                set_attribute(event, field, value)
        check(event, "checksum", "ASCII letters and digits", is_alphanumeric)
        check(event, "customerId", "digits", is_digits)
        set_attribute(event, "valid", "true")
        return [event]


def program_id(event: Event) -> str:
    """The event's `programId` when it is present and ASCII digits; raises a rejection otherwise."""
    return check(event, "programId", "digits", is_digits)


def check(event: Event, name: str, expected: str, well_formed: Callable[[str], bool]) -> str:
    """Attribute `name` when present, non-empty and `well_formed`; raises a rejection otherwise."""
    value = next((v for key, v in event.attributes if key == name), None)
    if value is None:
        raise Err(PluginError_Reject(f"missing {name}"))
    if not value or not well_formed(value):
        raise Err(PluginError_Reject(f"invalid {name} {quoted(value)}: expected {expected}"))
    return value


def set_attribute(event: Event, name: str, value: str) -> None:
    """Removes every attribute called `name` and appends `name` = `value`."""
    event.attributes = [(k, v) for k, v in event.attributes if k != name]
    event.attributes.append((name, value))


def quoted(value: str) -> str:
    """A client-supplied value as it appears in a message: the first 64 characters in double
    quotes, `\\0 \\t \\r \\n \\\\ \\"` escaped, other control characters (U+0000–U+001F,
    U+007F–U+009F) as `\\u{hex}`, and `…` after the closing quote when the value was cut."""

    def escape(c: str) -> str:
        if c in ESCAPES:
            return ESCAPES[c]
        code = ord(c)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return f"\\u{{{code:x}}}"
        return c

    shown = "".join(escape(c) for c in value[:MAX_SHOWN_CHARS])
    return f'"{shown}"' + ("…" if len(value) > MAX_SHOWN_CHARS else "")
