#!/usr/bin/env python3
"""Single-node Apache Kafka 4.x in KRaft mode (broker + controller in one JVM) for the local stack.

No Docker: the broker runs from the jars that ``tools/bootstrap.py`` copies into
``.cache/kafka/libs`` (see ``tools/kafka/pom.xml``). State lives in ``.cache/run/kafka``.

Ports and state directory default to 9092 (clients), 9093 (controller), 9094 (pods) and
``.cache/run/kafka``; ``TASKFLOW_KAFKA_PORT``, ``TASKFLOW_KAFKA_CONTROLLER_PORT``,
``TASKFLOW_KAFKA_POD_PORT`` and ``TASKFLOW_KAFKA_DIR`` move them, and so does ``configure()``, so a
second broker (the chaos suite's, which kills it) never touches the shared one.

CLI::

    python tools/kafka_node.py start          # start (if not running), wait, create topics
    python tools/kafka_node.py stop
    python tools/kafka_node.py status
    python tools/kafka_node.py reset          # stop and delete all data (topics, offsets)
    python tools/kafka_node.py topics         # create missing topics, list all
    python tools/kafka_node.py consume TOPIC [--timeout 10]   # JSON lines: value + headers
    python tools/kafka_node.py produce TOPIC [--key K] [--header k=v ...] < value

Python (tests)::

    import kafka_node                           # with tools/ on sys.path
    kafka_node.start(); kafka_node.ensure_topics()
    records = kafka_node.consume("task-events-dlq", timeout=10)
    # -> [{"topic", "partition", "offset", "timestamp", "key", "value", "headers": {...}}, ...]
    kafka_node.stop()
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import procs  # noqa: E402

REPO = TOOLS.parent
CACHE = REPO / ".cache"
LIBS = CACHE / "kafka" / "libs"
CLASSES = CACHE / "kafka" / "classes"
HOST = "127.0.0.1"
# A second listener for pods of the local Kubernetes cluster (tools/cluster.py): they reach the host
# through their bridge's gateway, so the broker must advertise that address to them, not 127.0.0.1.
# It listens on every interface (the gateway address only exists while the cluster runs).
POD_ADDRESS = os.environ.get("TASKFLOW_KAFKA_POD_ADDRESS", "10.244.0.1")
# set by configure() below
RUN = DATA = LOGS = PROPS = LOG4J = PIDFILE = CLUSTER_ID_FILE = Path()
PORT = CONTROLLER_PORT = POD_PORT = 0
BOOTSTRAP = POD_BOOTSTRAP = ""


def configure(
    port: int | None = None,
    controller_port: int | None = None,
    pod_port: int | None = None,
    run_dir: Path | None = None,
) -> None:
    """Point this module at one broker: its ports and its state directory (logs in ``<run_dir>/../logs``).
    Arguments left out come from the environment, then the defaults."""
    global RUN, DATA, LOGS, PROPS, LOG4J, PIDFILE, CLUSTER_ID_FILE, PORT, CONTROLLER_PORT, POD_PORT
    global BOOTSTRAP, POD_BOOTSTRAP
    env = os.environ.get
    PORT = port or int(env("TASKFLOW_KAFKA_PORT", "9092"))
    CONTROLLER_PORT = controller_port or int(env("TASKFLOW_KAFKA_CONTROLLER_PORT", "9093"))
    POD_PORT = pod_port or int(env("TASKFLOW_KAFKA_POD_PORT", "9094"))
    RUN = Path(run_dir or env("TASKFLOW_KAFKA_DIR") or CACHE / "run" / "kafka").resolve()
    DATA = RUN / "data"
    LOGS = RUN.parent / "logs"
    PROPS = RUN / "server.properties"
    LOG4J = RUN / "log4j2.properties"
    PIDFILE = RUN / "kafka.pid"
    CLUSTER_ID_FILE = RUN / "cluster.id"
    BOOTSTRAP = f"{HOST}:{PORT}"
    POD_BOOTSTRAP = f"{POD_ADDRESS}:{POD_PORT}"


configure()
HEAP = "-Xmx512m"

# name -> partitions
TOPICS: dict[str, int] = {
    "task-events": 3,
    "reminders": 3,
    "exports": 1,
    "task-events-dlq": 1,
    "reminders-dlq": 1,
    "exports-dlq": 1,
}


class KafkaError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[kafka] {msg}", flush=True)


def _classpath(with_tool: bool = False) -> str:
    if not LIBS.is_dir() or not any(LIBS.glob("kafka_2.13-*.jar")):
        raise KafkaError(f"Kafka jars missing in {LIBS}; run: python tools/bootstrap.py")
    cp = [str(LIBS / "*")]
    if with_tool:
        if not (CLASSES / "TaskflowKafkaTool.class").exists():
            raise KafkaError(f"{CLASSES}/TaskflowKafkaTool.class missing; run: python tools/bootstrap.py")
        cp.insert(0, str(CLASSES))
    return os.pathsep.join(cp)


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    return "java"


def _port_open(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # the pid file may be stale and the pid reused: check it is our JVM
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"kafka.Kafka" not in cmdline:
            return None
    except OSError:
        pass
    return pid


def is_running() -> bool:
    return _pid() is not None


def _write_config() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    props = f"""# generated by tools/kafka_node.py -- single node, KRaft, broker + controller
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={HOST}:{CONTROLLER_PORT}
listeners=PLAINTEXT://{HOST}:{PORT},CONTROLLER://{HOST}:{CONTROLLER_PORT},PODS://0.0.0.0:{POD_PORT}
advertised.listeners=PLAINTEXT://{HOST}:{PORT},CONTROLLER://{HOST}:{CONTROLLER_PORT},PODS://{POD_BOOTSTRAP}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PODS:PLAINTEXT
log.dirs={DATA}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
message.max.bytes=1048588
log.retention.hours=168
log.segment.bytes=16777216
num.network.threads=2
num.io.threads=2
"""
    PROPS.write_text(props)
    LOG4J.write_text(
        """# generated by tools/kafka_node.py
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.apache.name = org.apache.kafka
logger.apache.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
"""
    )


def _cluster_id() -> str:
    if CLUSTER_ID_FILE.exists():
        return CLUSTER_ID_FILE.read_text().strip()
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    CLUSTER_ID_FILE.write_text(cid + "\n")
    return cid


def _format_storage() -> None:
    if (DATA / "meta.properties").exists():
        return
    cid = _cluster_id()
    _log(f"formatting KRaft storage in {DATA} (cluster id {cid})")
    cmd = [
        _java(),
        "-Xmx256m",
        f"-Dlog4j2.configurationFile={LOG4J}",
        "-cp",
        _classpath(),
        "kafka.tools.StorageTool",
        "format",
        "--standalone",
        "-t",
        cid,
        "-c",
        str(PROPS),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise KafkaError(f"kafka StorageTool format failed (rc={res.returncode}): {res.stdout}{res.stderr}")


def _tool(*args: str, timeout: float = 60, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    cmd = [
        _java(),
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",
        "-Xshare:auto",
        f"-Dlog4j2.configurationFile={LOG4J if LOG4J.exists() else ''}",
        "-Dlog4j2.level=warn",
        "-cp",
        _classpath(with_tool=True),
        "TaskflowKafkaTool",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, timeout=timeout, input=stdin)


def wait_ready(timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until the broker accepts connections and answers metadata requests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _port_open(PORT):
        if proc is not None and proc.poll() is not None:
            PIDFILE.unlink(missing_ok=True)
            tail = (LOGS / "kafka.log").read_text(errors="replace")[-2000:]
            raise KafkaError(f"Kafka exited during start (rc={proc.returncode}); see {LOGS / 'kafka.log'}:\n{tail}")
        time.sleep(0.3)
    if not _port_open(PORT):
        raise KafkaError(f"Kafka did not open {BOOTSTRAP} within {timeout:.0f}s; see {LOGS / 'kafka.log'}")
    remaining = max(5.0, deadline - time.monotonic())
    res = _tool("ready", BOOTSTRAP, str(int(remaining * 1000)), timeout=remaining + 30)
    if res.returncode != 0:
        raise KafkaError(f"Kafka at {BOOTSTRAP} does not answer: {res.stdout.decode()} {res.stderr.decode()[-2000:]}")


def start(timeout: float = 90.0, topics: bool = True) -> int:
    """Start the broker unless it already runs; wait until it answers; create the topics.

    Returns the broker's pid (or 0 when something else already listens on the port).
    """
    pid = _pid()
    if pid is None and _port_open(PORT):
        _log(f"something already listens on {BOOTSTRAP}; using it as the broker")
        wait_ready(timeout)
        if topics:
            ensure_topics()
        return 0
    if pid is None:
        proc = spawn()
        pid = proc.popen.pid
        t0 = time.monotonic()
        wait_ready(timeout, proc.popen)
        _log(f"broker ready after {time.monotonic() - t0:.1f}s (pid {pid})")
    else:
        wait_ready(timeout)
    if topics:
        ensure_topics()
    return pid


def spawn() -> procs.Proc:
    """Start the broker process (config written, storage formatted once) without waiting for it;
    a supervisor calls this again, with the same ports and data, when the broker dies."""
    _write_config()
    _format_storage()
    cmd = [
        _java(),
        HEAP,
        "-Xms256m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J}",
        f"-Dkafka.logs.dir={LOGS}",
        "-cp",
        _classpath(),
        "kafka.Kafka",
        str(PROPS),
    ]
    _log(f"starting broker on {BOOTSTRAP} (controller {HOST}:{CONTROLLER_PORT}), log {LOGS / 'kafka.log'}")
    proc = procs.spawn("kafka", cmd, dict(os.environ), LOGS / "kafka.log", cwd=RUN)
    PIDFILE.write_text(f"{proc.popen.pid}\n")
    return proc


def stop(timeout: float = 30.0) -> None:
    """Stop the broker this module started (by its pid file), TERM then KILL."""
    pid = _pid()
    if pid is None:
        PIDFILE.unlink(missing_ok=True)
        return
    _log(f"stopping broker (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        # reap if it is our child
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    else:
        _log("broker did not stop in time; killing it")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    PIDFILE.unlink(missing_ok=True)


def reset() -> None:
    """Stop the broker and delete its data (all topics and offsets); the next start formats anew."""
    import shutil

    stop()
    if RUN.exists():
        shutil.rmtree(RUN)
    _log(f"deleted {RUN}")


def ensure_topics(topics: dict[str, int] | None = None) -> dict[str, int]:
    """Create the missing topics (idempotent); return every topic with its partition count."""
    topics = TOPICS if topics is None else topics
    specs = [f"{name}:{parts}" for name, parts in topics.items()]
    res = _tool("topics", BOOTSTRAP, *specs, timeout=90)
    if res.returncode != 0:
        raise KafkaError(f"creating topics failed: {res.stderr.decode()[-3000:]}")
    for line in res.stderr.decode().splitlines():
        if line.startswith("created topic"):
            _log(line)
    out: dict[str, int] = {}
    for line in res.stdout.decode().splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            out[d["topic"]] = d["partitions"]
    return out


def consume(topic: str, timeout: float = 10.0) -> list[dict]:
    """Every record of ``topic`` from offset 0 up to the end offsets at call time.

    Each record: ``{"topic", "partition", "offset", "timestamp", "key", "value", "headers"}``
    (key/value/headers decoded as UTF-8 strings). Returns early once all partitions are read.
    """
    res = _tool("consume", BOOTSTRAP, topic, str(int(timeout * 1000)), timeout=timeout + 60)
    if res.returncode != 0:
        raise KafkaError(f"consuming {topic} failed (rc={res.returncode}): {res.stderr.decode()[-3000:]}")
    return [json.loads(line) for line in res.stdout.decode().splitlines() if line.startswith("{")]


def produce(topic: str, value: bytes | str, key: str | None = None, headers: dict[str, str] | None = None) -> dict:
    """Write one raw record (e.g. a poison message) straight to Kafka, bypassing Dapr."""
    if isinstance(value, str):
        value = value.encode()
    hdrs = [f"{k}={v}" for k, v in (headers or {}).items()]
    res = _tool("produce", BOOTSTRAP, topic, key if key is not None else "-", *hdrs, stdin=value, timeout=90)
    if res.returncode != 0:
        raise KafkaError(f"producing to {topic} failed: {res.stderr.decode()[-3000:]}")
    return json.loads(res.stdout.decode().strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("start", help="start the broker (if needed) and create the topics")
    sub.add_parser("stop", help="stop the broker")
    sub.add_parser("status", help="is it running?")
    sub.add_parser("reset", help="stop and delete all Kafka data (topics, offsets)")
    sub.add_parser("topics", help="create missing topics and list all")
    c = sub.add_parser("consume", help="print all records of a topic as JSON lines")
    c.add_argument("topic")
    c.add_argument("--timeout", type=float, default=10.0)
    p = sub.add_parser("produce", help="write one record; value from stdin")
    p.add_argument("topic")
    p.add_argument("--key")
    p.add_argument("--header", action="append", default=[], metavar="K=V")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "start":
            pid = start()
            _log(f"running (pid {pid or 'external'}) on {BOOTSTRAP}")
        elif args.cmd == "stop":
            stop()
        elif args.cmd == "reset":
            reset()
        elif args.cmd == "status":
            up = _port_open(PORT)
            print(json.dumps({"running": is_running(), "port_open": up, "pid": _pid(), "bootstrap": BOOTSTRAP}))
            return 0 if up else 1
        elif args.cmd == "topics":
            for name, parts in sorted(ensure_topics().items()):
                print(f"{name}\t{parts}")
        elif args.cmd == "consume":
            for rec in consume(args.topic, args.timeout):
                print(json.dumps(rec))
        elif args.cmd == "produce":
            headers = dict(h.split("=", 1) for h in args.header)
            print(json.dumps(produce(args.topic, sys.stdin.buffer.read(), args.key, headers)))
    except (KafkaError, subprocess.TimeoutExpired) as e:
        print(f"kafka_node: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
