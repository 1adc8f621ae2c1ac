"""XAPI failures as xenbot's own exceptions, so only the gateway imports XenAPI."""

from __future__ import annotations

from collections.abc import Sequence


class XenError(Exception):
    """Anything that went wrong talking to a pool."""

    pool: str


class XapiError(XenError):
    """XAPI answered with a failure: ``[CODE, *params]`` as in ``ErrorDescription``."""

    def __init__(self, pool: str, method: str, details: Sequence[object]) -> None:
        self.pool = pool
        self.method = method
        self.code = str(details[0]) if details else "UNKNOWN_ERROR"
        self.params = [str(d) for d in details[1:]]
        super().__init__(f"{self.code}{' ' + str(self.params) if self.params else ''} from {method} on {pool}")

    @property
    def short(self) -> str:
        """``CODE: param, param`` for one-line summaries in Slack."""
        return self.code + (": " + ", ".join(self.params) if self.params else "")


class ObjectGone(XapiError):
    """``HANDLE_INVALID [class, ref]``: the object was destroyed (or the ref is from before a
    restart of the master). A write that gets it found nothing to change: the interface is gone,
    not failed. A subclass, so code that handles any XapiError keeps working."""

    @property
    def object_class(self) -> str:
        return self.params[0] if self.params else ""

    @property
    def ref(self) -> str:
        return self.params[1] if len(self.params) > 1 else ""


class XapiUnavailable(XenError):
    """The pool could not be reached (refused, timed out, TLS failure, no master found).

    ``unsent`` is True only when the call certainly never reached XAPI (connection refused,
    no session): a write may then be sent again. Otherwise its answer was lost and it may
    have run, or may still run later."""

    def __init__(self, pool: str, reason: str, *, unsent: bool = False) -> None:
        self.pool = pool
        self.reason = reason
        self.unsent = unsent
        super().__init__(f"pool {pool!r} is unreachable: {reason}")


class XapiAuthFailed(XenError):
    """Credentials were refused: retrying cannot help, an operator must fix the config."""

    def __init__(self, pool: str, user: str, answer: Sequence[object] = ()) -> None:
        self.pool = pool
        self.answer = [str(a) for a in answer]  # XAPI's ErrorDescription, when it gave one
        why = {  # XA ocaml/xapi/xapi_session.ml: the password was right, the pool still says no
            "SESSION_AUTHORIZATION_FAILED": "authenticated, but the pool has no subject for it",
            "RBAC_PERMISSION_DENIED": "authenticated, but its subject has no role in the pool",
        }.get(self.answer[0] if self.answer else "")
        super().__init__(f"pool {pool!r} refused user {user!r}: {why}" if why
                         else f"pool {pool!r} refused the credentials of user {user!r}")
