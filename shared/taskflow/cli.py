"""The ``taskflow`` command: run embedded mode, migrate a database, mint a token."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from taskflow import config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dev = sub.add_parser("dev", help="run embedded mode (all functions in one process)")
    dev.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    dev.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    mig = sub.add_parser("migrate", help="bring the database (TASKFLOW_DATABASE_URL) to the newest schema")
    mig.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="wait this long for the database")
    tok = sub.add_parser("token", help="print a bearer token for USER signed with TASKFLOW_JWT_SECRET")
    tok.add_argument("user")
    tok.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds (default 1 day)")
    sub.add_parser("schemas", help="print the JSON Schemas of every event type")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=os.environ.get("TASKFLOW_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "dev":
        os.environ.setdefault("TASKFLOW_DEV", "1")
        from taskflow.server import serve

        serve(args.host, args.port)
    elif args.command == "migrate":
        from taskflow.adapters import db
        from taskflow.bootstrap import Root

        root = Root(config.load())
        engine = db.build_engine(root.database_url)
        db.wait_until_reachable(engine, args.wait)
        db.migrate(engine)
        print("database is at the newest schema")
    elif args.command == "token":
        os.environ.setdefault("TASKFLOW_DEV", "1")
        from taskflow.api.auth import issue
        from taskflow.bootstrap import Root

        root = Root(config.load())
        print(issue(args.user, root.settings, root.jwt_secret, args.ttl))
    elif args.command == "schemas":
        import json

        from taskflow.events import json_schemas

        print(json.dumps(json_schemas(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
