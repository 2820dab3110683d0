"""The `{{name}}` plugin.

`validate` rejects an event without a `programId` attribute. `transform` looks the
program up in core data: a store error asks for a retry, an unknown program drops the
event, a known one gets its `programName` and a `label` (config key `label`, default
`checked`) appended to the attributes.

WIT in Python: an export returning `result<T, plugin-error>` returns T or raises
`Err(PluginError_…(reason))`; an import returning `result` returns the ok value or raises
`Err(error)`; `option<T>` is `T | None`; attributes are a list of `(name, value)`.
The component is built with stubbed WASI: do not `print`, read the clock or use `random`.
"""

from typing import List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import config, core_data
from wit_world.imports.types import Event, PluginError_Reject, PluginError_Retry


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
            return []
        for field, value in record:
            if field == "programName":
                event.attributes.append(("programName", value))
                break
        event.attributes.append(("label", config.get("label") or "checked"))
        return [event]


def program_id(event: Event) -> str:
    """The event's `programId`, or a rejection."""
    for name, value in event.attributes:
        if name == "programId":
            return value
    raise Err(PluginError_Reject("missing programId"))
