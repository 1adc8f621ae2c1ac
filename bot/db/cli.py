"""``xenbot db upgrade|current`` and ``xenbot audit verify|tail``: the database, for operators.

Exit codes: 0 fine, 1 the database says no (broken chain, not migrated, unreachable),
2 the configuration is wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.db import audit, migrate
from bot.db.engine import NO_DATABASE, database_missing, deferred_engine, make_engine, session_factory
from bot.db.models import canonical_json
from bot.settings import load_for_command


def register(subparsers: Any) -> None:
    db = subparsers.add_parser("db", help="database schema")
    db_actions = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_actions.add_parser("upgrade", help="migrate the database to the newest schema")
    upgrade.add_argument("--revision", default="head", help="target revision (default: %(default)s)")
    upgrade.set_defaults(func=_with_engine(run_upgrade))
    current = db_actions.add_parser("current", help="show the schema revision of the database")
    current.add_argument("--check", action="store_true", help="exit 1 unless the schema is up to date")
    current.set_defaults(func=_with_engine(run_current))

    audit_parser = subparsers.add_parser("audit", help="the tamper-evident audit log")
    audit_actions = audit_parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_actions.add_parser("verify", help="check the hash chain of the whole audit log")
    verify.add_argument(
        "--anchor", type=_anchor, metavar="HASH:COUNT",
        help="a head posted earlier (audit channel or log): the log must still reach it with that hash",
    )
    verify.set_defaults(func=_with_engine(run_verify))
    tail = audit_actions.add_parser("tail", help="show the newest audit entries")
    tail.add_argument("-n", type=_positive, default=20, metavar="N", help="how many (default: %(default)s)")
    tail.add_argument("--action", metavar="PREFIX", help="only actions starting with PREFIX, e.g. change.")
    tail.set_defaults(func=_with_engine(run_tail))


def run_upgrade(args: argparse.Namespace, engine: Engine) -> int:
    before = migrate.current(engine)
    migrate.upgrade(engine, args.revision)
    after = migrate.current(engine)
    if before == after:
        print(f"database already at {after or '(empty)'}; nothing to do")
    else:
        print(f"database upgraded: {before or '(empty)'} -> {after}")
    return 0


def run_current(args: argparse.Namespace, engine: Engine) -> int:
    revision, newest = migrate.current(engine), migrate.head()
    if revision == newest:
        print(f"{revision} (head)")
        return 0
    if revision is None:
        print(f"(empty): not migrated; run 'xenbot db upgrade' (head is {newest})")
    else:
        print(f"{revision}: not at head {newest}; run 'xenbot db upgrade'")
    return 1 if args.check else 0


def run_verify(args: argparse.Namespace, engine: Engine) -> int:
    if not _migrated(engine):
        return 1
    # Deferred: a long scan reads a snapshot instead of holding SQLite's write lock.
    with session_factory(deferred_engine(engine))() as session:
        result = audit.verify(session, key=args.settings.audit.key(), anchor=args.anchor)
    if not result.ok and result.reason is not None and result.reason.startswith("keyed chain"):
        print(f"audit chain NOT CHECKED from row {result.first_bad_id}: {result.reason}")
        return 1
    if not result.ok:
        print(f"audit chain BROKEN at row {result.first_bad_id}: {result.reason}")
        return 1
    keyed = "not keyed (no [audit] key_file when written)"
    if result.keyed_from is not None:
        keyed = f"keyed (HMAC) from row {result.keyed_from}"
        if result.keyed_from > 1:
            keyed += f"; rows 1-{result.keyed_from - 1} are the older unkeyed chain"
    print(f"audit chain OK: {result.rows_checked} rows, {keyed}")
    if result.keyed_from is None and result.rows_checked and args.settings.audit.key_file is not None:
        # Legitimate before the first row written with the key; otherwise someone replaced the
        # keyed chain by an unkeyed one, which only an anchor (--anchor) can show.
        print("warning: [audit] key_file is set but no row is keyed yet: check against an anchor")
    if args.anchor is not None:
        print(f"anchor {args.anchor.count}: matches")
    if result.head_hash:
        print(f"head: {result.head_hash}:{result.rows_checked}")
    return 0


def run_tail(args: argparse.Namespace, engine: Engine) -> int:
    if not _migrated(engine):
        return 1
    with session_factory(deferred_engine(engine))() as session:
        events = audit.recent(session, args.n, args.action)
    for event in reversed(events):  # oldest first, like tail(1)
        where = f" in {event.channel}" if event.channel else ""
        request = f" [{event.request_id}]" if event.request_id else ""
        when = f"{event.at:%Y-%m-%d %H:%M:%S}Z"
        print(f"{event.id:>6} {when} {event.actor} {event.action} {event.target}{where}{request}")
        if event.details:
            print(f"       {canonical_json(event.details)}")
    return 0


def _with_engine(run: Callable[[argparse.Namespace, Engine], int]) -> Callable[[argparse.Namespace], int]:
    """Load the settings, open the engine, run, and turn failures into messages and exit codes."""

    def wrapper(args: argparse.Namespace) -> int:
        settings = load_for_command(args.config)
        if settings is None:
            return 2
        args.settings = settings
        if run is not run_upgrade and database_missing(settings.database_url):
            # Read-only: never create the file (connecting to SQLite would).
            print(f"xenbot: {NO_DATABASE}", file=sys.stderr)
            return 1
        engine = make_engine(settings.database_url)
        try:
            return run(args, engine)
        except SQLAlchemyError as exc:
            where = make_url(settings.database_url).render_as_string(hide_password=True)
            # The first line names the cause; the rest is SQL and a link to SQLAlchemy's FAQ.
            print(f"xenbot: database error ({where}): {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
        finally:
            engine.dispose()

    return wrapper


def _migrated(engine: Engine) -> bool:
    if migrate.current(engine) is None:
        print("xenbot: the database has no schema yet; run 'xenbot db upgrade'", file=sys.stderr)
        return False
    return True


def _anchor(value: str) -> audit.Anchor:
    try:
        return audit.Anchor.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number
