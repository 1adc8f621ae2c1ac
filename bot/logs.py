"""Logging: JSON lines for machines, plain lines for people, a reference on every line.

The reference shown to a user with an error ("reference 3f9c01ab") is the
``reference`` field of every log line written while that command or click was
handled, so support can find the whole story with one grep. Token-shaped
strings are masked on the way out, in case a library logs a request.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

reference_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("xenbot_reference", default=None)

_SECRET = re.compile(r"\b(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+)")
# The password part of a URL's userinfo: scheme://user:PASSWORD@host (user kept, password masked).
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
# Record attributes that are not ours to print: the standard ones, and uvicorn's copy of its
# message with terminal colour codes (``color_message``), which only its own formatter uses.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}

# Lines libraries write on every call or start that tell an operator nothing: alembic names its
# dialect each time the schema revision is read (every /readyz) and lists its plugins, and Bolt says the token is
# unused because xenbot hands it a ready client (while SLACK_BOT_TOKEN is also set).
_NOISE: dict[str, tuple[str, ...]] = {
    "alembic.runtime.migration": ("Context impl ", "Will assume "),
    "alembic.runtime.plugins": ("setup plugin ",),
    "slack_bolt.App": ("As you gave `client` as well",),
}


def redact(text: str) -> str:
    """Mask Slack tokens and URL passwords in ``text`` (a log line, a message, an error)."""
    return redact_url(_SECRET.sub(lambda m: m.group(0)[:5] + "…redacted", text))


def redact_url(text: str) -> str:
    """``http://root:secret@host/`` -> ``http://root:***@host/``, anywhere in ``text``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


@contextmanager
def reference(value: str) -> Iterator[str]:
    token = reference_var.set(value)
    try:
        yield value
    finally:
        reference_var.reset(token)


class _ReferenceFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "reference"):
            record.reference = reference_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                entry[key] = value if isinstance(value, int | float | bool) else redact(str(value))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        ref = getattr(record, "reference", None)
        return f"{text} [ref {ref}]" if ref else text


class _NoiseFilter(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self._prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self._prefixes)


def configure(level: str = "INFO", *, json_output: bool | None = None) -> None:
    """JSON when stderr is not a terminal (containers, systemd), text otherwise."""
    use_json = (not sys.stderr.isatty()) if json_output is None else json_output
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(_ReferenceFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name, prefixes in _NOISE.items():
        logger = logging.getLogger(name)
        logger.filters[:] = [f for f in logger.filters if not isinstance(f, _NoiseFilter)]
        logger.addFilter(_NoiseFilter(prefixes))
