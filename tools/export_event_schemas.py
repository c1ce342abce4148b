#!/usr/bin/env python3
"""Write the JSON Schema of every event's ``data`` to docs/events/<type>.json (``--check``: verify)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from taskflow.events import json_schemas

OUT = Path(__file__).resolve().parent.parent / "docs" / "events"


def rendered() -> dict[str, str]:
    return {
        f"{etype}.json": json.dumps(schema, indent=2, sort_keys=True) + "\n" for etype, schema in json_schemas().items()
    }


def main(argv: list[str]) -> int:
    files = rendered()
    if "--check" in argv:
        stale = [name for name, text in files.items() if not (OUT / name).exists() or (OUT / name).read_text() != text]
        if stale:
            print("docs/events is out of date; run python tools/export_event_schemas.py:", *stale, sep="\n  ")
            return 1
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(files)} schemas to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
