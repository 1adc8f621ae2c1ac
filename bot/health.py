"""Is xenbot able to work? The database answers and is migrated; each pool's master answers.

Used by ``GET /readyz`` (HTTP mode) and ``xenbot status`` (every mode). Each
check has a deadline so a hung pool makes the answer "not ready", not late.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from sqlalchemy import text

from bot import db
from bot.xen.errors import XenError

CHECK_DEADLINE_SECONDS = 5.0


def readiness(services: Any, deadline: float = CHECK_DEADLINE_SECONDS) -> tuple[bool, dict[str, Any]]:
    report: dict[str, Any] = {"database": _database(services), "pools": {}}
    gateways = list(services.gateways)
    if gateways:
        with ThreadPoolExecutor(max_workers=min(8, len(gateways))) as executor:
            futures = {g.name: executor.submit(_pool, g) for g in gateways}
            for name, future in futures.items():
                try:
                    report["pools"][name] = future.result(timeout=deadline)
                except FutureTimeout:
                    report["pools"][name] = {"ok": False, "error": f"no answer within {deadline:.0f} s"}
    ok = report["database"]["ok"] and all(p["ok"] for p in report["pools"].values())
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
