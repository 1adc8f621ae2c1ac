"""Users, roles and permissions: who may log in, and which calls each session may make.

What XAPI does (XA ``ocaml/xapi/xapi_session.ml`` ``login_with_password``, ``ocaml/xapi/rbac.ml``,
roles from ``ocaml/idl/datamodel_roles.ml`` and each class's and message's ``allowed_roles`` in
``ocaml/idl/datamodel*.ml``), and so what the simulator does:

* Every failed login sleeps **5 seconds** before answering ("sleep a bit to avoid someone
  brute-forcing the password", ``thread_delay_and_raise_error``), whatever the failure:
  - a wrong password, or a user the directory does not know →
    ``SESSION_AUTHENTICATION_FAILED [user, msg]``;
  - an AD user who authenticates but has no subject in the pool (nor a group of theirs) →
    ``SESSION_AUTHORIZATION_FAILED [user, "Subject … has no access rights in this pool"]``;
  - a subject without any role → ``RBAC_PERMISSION_DENIED ["session.login_with_password",
    "Subject … has no roles in this pool"]`` (CP-1260).
* ``root`` (the local superuser) may call everything; its session has ``is_local_superuser``
  true and an **empty** ``rbac_permissions`` — a client must look at both fields.
* Any other session has the permissions of its roles: lower-case action names
  (``vif.add_to_other_config``). A call outside them gets ``RBAC_PERMISSION_DENIED [permission,
  "No permission in user session. (Roles with this permission: pool-admin, …)"]``. The check
  runs after the session check and inside the task for ``Async.`` calls (the generated server
  wraps the operation, ``gen_server.ml``), with the ``Async.`` prefix removed.

Roles are totally ordered (``datamodel_roles.ml`` ``ordered``): a role may call what any role
below it may. Each message's minimum role comes from the datamodel; field setters and
``add_to``/``remove_from`` use the class's default (VIF, VM and network: vm-admin; PIF, Bond,
VLAN, host and pool: pool-operator); getters are for everyone.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.xen.sim import errors
from bot.xen.sim.errors import XapiError

if TYPE_CHECKING:
    from bot.xen.sim.api import CallContext, Dispatcher

SESSION_AUTHORIZATION_FAILED = "SESSION_AUTHORIZATION_FAILED"
RBAC_PERMISSION_DENIED = "RBAC_PERMISSION_DENIED"
LOGIN_FAILURE_DELAY_SECONDS = 5.0  # xapi_session.ml thread_delay_and_raise_error

# datamodel_roles.ml, most privileged first (client-cert is internal and left out).
ROLES = ("pool-admin", "pool-operator", "vm-power-admin", "vm-admin", "vm-operator", "read-only")

# Class defaults for messages and field writers (create_obj ~messages_default_allowed_roles).
_CLASS_DEFAULT = {
    "pool": "pool-operator", "host": "pool-operator", "PIF": "pool-operator", "Bond": "pool-operator",
    "VLAN": "pool-operator", "task": "pool-operator", "network": "vm-admin", "VM": "vm-admin",
    "VIF": "vm-admin", "VM_guest_metrics": "vm-admin", "session": "pool-admin",
}
# Messages whose datamodel entry names its own allowed_roles.
_MESSAGE_ROLE = {
    "VIF.plug": "vm-admin", "VIF.unplug": "vm-admin", "VIF.unplug_force": "vm-admin",
    "PIF.plug": "pool-operator", "PIF.unplug": "pool-operator", "PIF.set_property": "pool-operator",
    "PIF.reconfigure_ip": "pool-operator",
    "VM.start": "vm-operator", "VM.start_on": "vm-power-admin", "VM.clean_shutdown": "vm-operator",
    "VM.hard_shutdown": "vm-operator", "VM.clean_reboot": "vm-operator", "VM.hard_reboot": "vm-operator",
    "VM.pause": "vm-operator", "VM.unpause": "vm-operator", "VM.clone": "vm-admin", "VM.copy": "vm-admin",
    "VM.pool_migrate": "vm-power-admin", "host.restart_agent": "pool-operator",
    "pool.recover_slaves": "pool-operator",
    "event.from": "read-only", "event.inject": "read-only", "event.next": "read-only",
    "task.cancel": "read-only", "task.destroy": "read-only",
    "session.login_with_password": "read-only", "session.logout": "read-only", "session.get_this_host": "read-only",
    "session.get_rbac_permissions": "read-only", "session.get_is_local_superuser": "read-only",
    "session.get_auth_user_name": "read-only",
}
_GETTERS = ("get_all", "get_all_records", "get_record", "get_by_uuid", "get_by_name_label")


def minimum_role(method: str) -> str:
    """The least privileged role allowed to call ``method`` (without ``Async.``)."""
    if method in _MESSAGE_ROLE:
        return _MESSAGE_ROLE[method]
    cls, _, message = method.partition(".")
    if message in _GETTERS or message.startswith("get_"):
        return "read-only"  # implicit messages: create_obj ~implicit_messages_allowed_roles = _R_ALL
    return _CLASS_DEFAULT.get(cls, "pool-admin")


def roles_allowed(method: str) -> list[str]:
    """Every role that may call ``method``, most privileged first (``Datamodel_roles.roles_gte``)."""
    return list(ROLES[: ROLES.index(minimum_role(method)) + 1])


def permissions_of(role: str, methods: Iterable[str]) -> list[str]:
    """The permissions (lower-case action names) a session with ``role`` gets, among ``methods``."""
    return sorted(m.lower() for m in methods if role in roles_allowed(m))


@dataclass(frozen=True)
class User:
    """A directory user: ``subject`` false = not added to the pool; ``role`` "" = a subject without roles."""

    name: str
    password: str
    role: str = ""
    subject: bool = True

    @property
    def sid(self) -> str:
        return f"S-1-5-21-{zlib.crc32(self.name.encode())}"


class Users:
    """The external directory and the pool's subjects, as far as login needs them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, User] = {}
        self.failure_delay = LOGIN_FAILURE_DELAY_SECONDS

    def add(self, name: str, password: str, role: str = "", subject: bool = True) -> None:
        if role and role not in ROLES:
            raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
        with self._lock:
            self._users[name] = User(name, password, role, subject)

    def authenticate(self, name: str, password: str) -> User:
        """The user's roles for a new session, or the login error XAPI gives (not yet delayed)."""
        with self._lock:
            user = self._users.get(name)
        if user is None or user.password != password:
            raise XapiError(errors.SESSION_AUTHENTICATION_FAILED, [name, "Authentication failure"])
        if not user.subject:
            raise XapiError(SESSION_AUTHORIZATION_FAILED,
                            [name, f"Subject {name} (identifier {user.sid}, from 127.0.0.1) has no access rights "
                                   "in this pool"])
        if not user.role:
            raise XapiError(RBAC_PERMISSION_DENIED,
                            ["session.login_with_password",
                             f"Subject {name} (identifier {user.sid}) has no roles in this pool"])
        return user


def check(role: str | None, method: str) -> None:
    """rbac.ml ``check``: ``role`` None is the local superuser (always allowed)."""
    if role is None:
        return
    name = method.removeprefix("Async.")
    allowed = roles_allowed(name)
    if role not in allowed:
        raise XapiError(RBAC_PERMISSION_DENIED,
                        [name.lower(), f"No permission in user session. (Roles with this permission: "
                                       f"{', '.join(allowed)})"])


def register(dispatcher: Dispatcher) -> None:
    """The session fields a client reads to learn what it may do (XenCenter reads the same two).

    ``session.get_rbac_permissions`` is empty for root, so ``get_is_local_superuser`` comes first."""
    add = dispatcher._add

    def own(ctx: CallContext, ref: Any) -> Any:
        session = dispatcher.sessions.get(ref)
        if session is None:
            raise XapiError(errors.HANDLE_INVALID, ["session", str(ref)])
        return session

    def permissions(ctx: CallContext, a: tuple[Any, ...]) -> Any:
        role = own(ctx, a[0]).role
        return [] if role is None else permissions_of(role, dispatcher.message_names())

    add("session.get_rbac_permissions", ("self",), permissions)
    add("session.get_is_local_superuser", ("self",), lambda ctx, a: own(ctx, a[0]).role is None)
    add("session.get_auth_user_name", ("self",), lambda ctx, a: own(ctx, a[0]).user)
