#!/usr/bin/env python3
"""Build the web app (web/) into web/dist, which tasks-api serves at ``/`` (stdlib only, idempotent).

    python tools/build_web.py          # npm ci when the lock file changed, then typecheck + vite build
    python tools/build_web.py --force  # rebuild even when the inputs have not changed

Skipped when web/dist exists and ``.cache/stamps/web.json`` records the same inputs (the lock
file, the sources and the Node version), so warm runs of ``nox -s dev`` start at once. Writes a
gzip sibling of every text asset so tasks-api can send it compressed. Needs Node 20.19+ and npm.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bootstrap import _stamp_ok, _write_stamp

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "web"
DIST = WEB / "dist"
INPUTS = ("package.json", "package-lock.json", "index.html", "vite.config.ts", "tsconfig.json", "src", "public")
COMPRESSIBLE = (".html", ".js", ".css", ".svg", ".json", ".webmanifest", ".txt")


def log(msg: str) -> None:
    print(f"[build_web] {msg}", flush=True)


def _inputs_digest() -> str:
    h = hashlib.sha256()
    for name in INPUTS:
        root = WEB / name
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            if f.exists():
                h.update(str(f.relative_to(WEB)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _run(*cmd: str) -> None:
    started = time.monotonic()
    log(f"$ {' '.join(cmd)}")
    subprocess.run(cmd, cwd=WEB, check=True)
    log(f"  done in {time.monotonic() - started:.1f} s")


def _node_version() -> str:
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise SystemExit("[build_web] node and npm are needed to build the web app (Node 20.19 or newer)")
    return subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()


def _gzip_assets() -> int:
    count = 0
    for f in DIST.rglob("*"):
        if f.is_file() and f.suffix in COMPRESSIBLE:
            f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes(), compresslevel=9, mtime=0))
            count += 1
    return count


def build(force: bool = False) -> None:
    node = _node_version()
    want = {"inputs": _inputs_digest(), "node": node}
    if not force and (DIST / "index.html").is_file() and _stamp_ok("web", want):
        log(f"web/dist is up to date ({want['inputs']}); skipped")
        return
    lock = hashlib.sha256((WEB / "package-lock.json").read_bytes()).hexdigest()[:16]
    installed = WEB / "node_modules" / ".taskflow-lock"
    if force or not installed.is_file() or installed.read_text() != lock:
        _run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
        installed.write_text(lock)
    _run("npm", "run", "--silent", "build")
    log(f"gzip: {_gzip_assets()} files")
    _write_stamp("web", want)
    log("web app built into web/dist")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="rebuild even if the inputs did not change")
    args = parser.parse_args()
    try:
        build(args.force)
    except subprocess.CalledProcessError as exc:
        print(f"[build_web] failed: {' '.join(exc.cmd)} exited {exc.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
