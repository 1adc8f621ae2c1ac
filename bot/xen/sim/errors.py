"""XAPI error values raised inside the simulator.

XAPI reports every failure as ``ErrorDescription = [CODE, param, ...]`` with all
params as strings. Keeping one exception type that carries exactly that list means
the HTTP layer can serialise it without knowing which layer raised it, and a test
using the Python API sees the same code and params a XenAPI client would.
"""

from __future__ import annotations

from collections.abc import Iterable


class XapiError(Exception):
    """A XAPI ``Failure``: ``code`` plus string ``params``, in wire order."""

    def __init__(self, code: str, params: Iterable[object] = ()) -> None:
        self.code = code
        # XAPI params are always strings on the wire; coerce here so no caller can
        # accidentally leak an int that a real pool would never send.
        self.params = [str(p) for p in params]
        super().__init__(self.description)

    @property
    def description(self) -> list[str]:
        """The ``ErrorDescription`` list exactly as it travels over XML-RPC."""
        return [self.code, *self.params]


# Error codes used by the simulator, spelled as in XA ocaml/idl/datamodel_errors.ml.
SESSION_AUTHENTICATION_FAILED = "SESSION_AUTHENTICATION_FAILED"
SESSION_INVALID = "SESSION_INVALID"
HOST_IS_SLAVE = "HOST_IS_SLAVE"
HANDLE_INVALID = "HANDLE_INVALID"
UUID_INVALID = "UUID_INVALID"
MESSAGE_METHOD_UNKNOWN = "MESSAGE_METHOD_UNKNOWN"
MESSAGE_PARAMETER_COUNT_MISMATCH = "MESSAGE_PARAMETER_COUNT_MISMATCH"
FIELD_TYPE_ERROR = "FIELD_TYPE_ERROR"
MAP_DUPLICATE_KEY = "MAP_DUPLICATE_KEY"
INVALID_VALUE = "INVALID_VALUE"
OTHER_OPERATION_IN_PROGRESS = "OTHER_OPERATION_IN_PROGRESS"
OPERATION_NOT_ALLOWED = "OPERATION_NOT_ALLOWED"
VM_BAD_POWER_STATE = "VM_BAD_POWER_STATE"
VM_MISSING_PV_DRIVERS = "VM_MISSING_PV_DRIVERS"
VM_IS_TEMPLATE = "VM_IS_TEMPLATE"
VM_LACKS_FEATURE = "VM_LACKS_FEATURE"
OPERATION_BLOCKED = "OPERATION_BLOCKED"
VM_IS_SNAPSHOT = "VM_IS_SNAPSHOT"
DEVICE_ALREADY_ATTACHED = "DEVICE_ALREADY_ATTACHED"
DEVICE_ALREADY_DETACHED = "DEVICE_ALREADY_DETACHED"
CANNOT_PLUG_BOND_SLAVE = "CANNOT_PLUG_BOND_SLAVE"
CANNOT_CHANGE_PIF_PROPERTIES = "CANNOT_CHANGE_PIF_PROPERTIES"
PIF_IS_MANAGEMENT_INTERFACE = "PIF_IS_MANAGEMENT_INTERFACE"
PIF_DOES_NOT_ALLOW_UNPLUG = "PIF_DOES_NOT_ALLOW_UNPLUG"
VIF_IN_USE = "VIF_IN_USE"
EVENTS_LOST = "EVENTS_LOST"
EVENT_FROM_TOKEN_PARSE_FAILURE = "EVENT_FROM_TOKEN_PARSE_FAILURE"  # noqa: S105 - an error code
TASK_CANCELLED = "TASK_CANCELLED"
INTERNAL_ERROR = "INTERNAL_ERROR"
