#!/usr/bin/env python3
"""The local stack's OpenTelemetry Collector: OTLP in, JSON lines and Prometheus text out.

    python tools/otelcol.py config --out-dir .cache/run/telemetry   # print the configuration
    python tools/otelcol.py run                                     # foreground, default ports

The binary is ``.cache/bin/otelcol-taskflow``, built by ``tools/bootstrap.py otelcol`` from the
sources the collector builder generated from ``tools/otelcol/builder-config.yaml`` (OTLP receiver,
batch processor, file and Prometheus exporters). What it writes, under ``out_dir``
(``.cache/run/telemetry/`` in the stack):

    traces.jsonl   one OTLP/JSON ``ExportTraceServiceRequest`` per line (spans of every function and daprd)
    metrics.jsonl  one OTLP/JSON ``ExportMetricsServiceRequest`` per line

and it serves every metric it received as Prometheus text at ``http://127.0.0.1:<prometheus_port>/metrics``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import bootstrap  # noqa: E402
import procs  # noqa: E402

REPO = TOOLS.parent
BINARY = bootstrap.OTELCOL
TRACES_FILE = "traces.jsonl"
METRICS_FILE = "metrics.jsonl"


@dataclass(frozen=True)
class Ports:
    """Where the collector listens (defaults: OTLP's usual 4317/4318, Prometheus exporter 8889)."""

    otlp_grpc: int = 4317
    otlp_http: int = 4318
    prometheus: int = 8889

    def all(self) -> tuple[int, int, int]:
        return self.otlp_grpc, self.otlp_http, self.prometheus


def config(out_dir: Path, ports: Ports = Ports()) -> str:
    """The collector configuration (JSON is YAML): loopback only, no self-telemetry port."""
    out = Path(out_dir).resolve()
    doc = {
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"127.0.0.1:{ports.otlp_grpc}"},
                    "http": {"endpoint": f"127.0.0.1:{ports.otlp_http}"},
                }
            }
        },
        "processors": {"batch": {"timeout": "1s"}},
        "exporters": {
            "file/traces": {"path": str(out / TRACES_FILE), "format": "json", "flush_interval": "1s"},
            "file/metrics": {"path": str(out / METRICS_FILE), "format": "json", "flush_interval": "1s"},
            "prometheus": {"endpoint": f"127.0.0.1:{ports.prometheus}"},
        },
        "service": {
            # The collector's own metrics would listen on :8888 by default (one per host): off.
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "info"}},
            "pipelines": {
                "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["file/traces"]},
                "metrics": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["file/metrics", "prometheus"],
                },
            },
        },
    }
    return json.dumps(doc, indent=2) + "\n"


def spawn(run_dir: Path, ports: Ports, logfile: Path, fresh: bool = False) -> procs.Proc:
    """Write ``run_dir/otelcol.yaml`` and start the collector (output in ``run_dir/telemetry``;
    ``fresh`` empties it first, so the files hold one run of the stack)."""
    out = run_dir / "telemetry"
    out.mkdir(parents=True, exist_ok=True)
    if fresh:
        for name in (TRACES_FILE, METRICS_FILE):
            (out / name).unlink(missing_ok=True)
    cfg = run_dir / "otelcol.yaml"
    cfg.write_text(config(out, ports))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return procs.spawn("otelcol", [str(BINARY), "--config", f"file:{cfg}"], env, logfile, cwd=REPO)


def parse_lines(lines: list[str]) -> list[dict]:
    """Every line that is a JSON object (a line being written, or any other output, is skipped)."""
    out = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def read_jsonl(path: Path) -> list[dict]:
    """Every complete line of a file the collector writes (a line being written is skipped)."""
    if not path.exists():
        return []
    return parse_lines(path.read_text(errors="replace").splitlines())


def spans(path: Path) -> list[dict]:
    """Flattened spans of ``traces.jsonl``: each span with ``service`` (service.name) and ``scope``."""
    return spans_of(read_jsonl(path))


def spans_of(requests: list[dict]) -> list[dict]:
    """Flattened spans of OTLP/JSON export requests (``traces.jsonl``'s lines, or the chart's
    collector's stdout, where its own JSON log lines have no ``resourceSpans``)."""
    out = []
    for req in requests:
        for rs in req.get("resourceSpans", []):
            attrs = {
                a["key"]: a.get("value", {}).get("stringValue") for a in rs.get("resource", {}).get("attributes", [])
            }
            for ss in rs.get("scopeSpans", []):
                scope = ss.get("scope", {}).get("name", "")
                for span in ss.get("spans", []):
                    out.append({**span, "service": attrs.get("service.name"), "scope": scope})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["config", "run"])
    ap.add_argument("--out-dir", type=Path, default=REPO / ".cache" / "run" / "telemetry")
    ap.add_argument("--otlp-grpc-port", type=int, default=4317)
    ap.add_argument("--otlp-http-port", type=int, default=4318)
    ap.add_argument("--prometheus-port", type=int, default=8889)
    args = ap.parse_args(argv)
    ports = Ports(args.otlp_grpc_port, args.otlp_http_port, args.prometheus_port)
    if args.cmd == "config":
        print(config(args.out_dir, ports), end="")
        return 0
    bootstrap.bootstrap(["otelcol"])
    run_dir = args.out_dir.parent
    proc = spawn(run_dir, ports, run_dir / "logs" / "otelcol.log", fresh=True)

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the collector too (it runs in a session of its own)

    signal.signal(signal.SIGTERM, stop)
    print(
        f"collector: OTLP grpc 127.0.0.1:{ports.otlp_grpc}, http 127.0.0.1:{ports.otlp_http}; files in {args.out_dir}"
    )
    try:
        proc.popen.wait()
    except KeyboardInterrupt:
        procs.stop([proc], timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
