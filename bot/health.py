"""Is xenbot able to work? The database answers and is migrated; each pool's master answers.

Used by ``GET /readyz`` (HTTP mode) and ``xenbot status`` (every mode). Every check
runs on a thread of its own and the answer waits for them at most ``deadline`` in
all: a hung master (or database) makes the answer "not ready", never late. A
``with ThreadPoolExecutor`` block used to wait for a hung check on its way out, so
``/readyz`` did not answer for as long as the master hung. A check still running
from an earlier request is waited on again instead of starting another, so a
balancer probing a hung pool every few seconds does not pile up threads.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

from sqlalchemy import text

from bot import db
from bot.xen.errors import XenError

CHECK_DEADLINE_SECONDS = 5.0

_running: dict[tuple[int, str], tuple[object, Future[dict[str, Any]]]] = {}
_running_lock = threading.Lock()


def _check(owner: object, name: str, fn: Callable[[], dict[str, Any]]) -> Future[dict[str, Any]]:
    """``fn`` on a daemon thread (one that hangs must not hold up exit), or the one still running."""
    key = (id(owner), name)
    with _running_lock:
        running = _running.get(key)
        if running is not None:
            return running[1]
        future: Future[dict[str, Any]] = Future()
        _running[key] = (owner, future)  # the owner is kept alive with it, so its id stays unique

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter
            future.set_exception(exc)
        finally:
            with _running_lock:
                _running.pop(key, None)

    threading.Thread(target=run, name=f"xenbot-ready-{name}", daemon=True).start()
    return future


def _bound(fn: Callable[[Any], dict[str, Any]], arg: Any) -> Callable[[], dict[str, Any]]:
    return lambda: fn(arg)


def readiness(services: Any, deadline: float = CHECK_DEADLINE_SECONDS) -> tuple[bool, dict[str, Any]]:
    checks = {("database", ""): _check(services.engine, "database", lambda: _database(services))}
    for gateway in services.gateways:
        checks["pools", gateway.name] = _check(gateway, f"pool {gateway.name}", _bound(_pool, gateway))
    wait(checks.values(), timeout=deadline)
    report: dict[str, Any] = {"database": {}, "pools": {}}
    for (kind, name), future in checks.items():
        if not future.done():
            outcome: dict[str, Any] = {"ok": False, "error": f"no answer within {deadline:g} s"}
        elif future.exception() is not None:
            exc = future.exception()
            outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            outcome = future.result()
        if kind == "database":
            report["database"] = outcome
        else:
            report["pools"][name] = outcome
    ok = bool(report["database"]["ok"]) and all(p["ok"] for p in report["pools"].values())
    report["ok"] = ok
    return ok, report
def _database(services: Any) -> dict[str, Any]:
    if db.database_missing(services.settings.database_url):
        return {"ok": False, "error": db.NO_DATABASE}  # and connecting would create it
    try:
        with services.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        if not db.is_up_to_date(services.engine):
            return {"ok": False, "error": "schema is not at the latest revision; run xenbot db upgrade"}
        return {"ok": True, "revision": db.current(services.engine)}
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported as text
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _pool(gateway: Any) -> dict[str, Any]:
    try:
        gateway.call("pool.get_all")
        return {"ok": True, "master": gateway.master_url}
    except XenError as exc:  # with the master down, what each host answered (emergency mode …)
        return {"ok": False, "error": str(exc), "hosts": dict(getattr(gateway, "host_answers", {}))}


def register(subparsers: Any) -> None:
    status = subparsers.add_parser("status", help="check the database and every pool (exit 1 when not ready)")
    status.add_argument("--json", action="store_true", help="print the report as JSON")
    status.set_defaults(func=run_status)


def run_status(args: argparse.Namespace) -> int:
    from bot.settings import load_for_command
    from bot.wiring import build

    settings = load_for_command(args.config)
    if settings is None:
        return 2
    services = build(settings, migrate=False)
    try:
        ok, report = readiness(services)
    finally:
        services.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        database = report["database"]
        state = f"ok (revision {database.get('revision')})" if database["ok"] else database["error"]
        print(f"database: {state}")
        for name, pool in report["pools"].items():
            print(f"pool {name}: {'ok, master ' + pool['master'] if pool['ok'] else pool['error']}")
        if not report["pools"]:
            print("pools: none configured")
        print("ready" if ok else "NOT READY")
    return 0 if ok else 1
