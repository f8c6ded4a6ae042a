"""The three servers of the local stack: Kafka (KRaft), PostgreSQL and FerretDB.

Each knows how to install itself from a package registry, start detached, and answer a real
readiness probe (Kafka metadata, a Postgres query, a Mongo ``ping``).
"""

from __future__ import annotations

import base64
import grp
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from tomstream.config import (
    LOCAL_KAFKA_BOOTSTRAP,
    LOCAL_KAFKA_CONTROLLER_PORT,
    LOCAL_KAFKA_PORT,
    LOCAL_MONGODB_PORT,
    LOCAL_MONGODB_URI,
    LOCAL_POSTGRES_DSN,
    LOCAL_POSTGRES_PORT,
)
from tomstream.shell.stack.process import ManagedProcess

KAFKA_VERSION = "3.9.1"
FERRETDB_VERSION = "1.24.2"

Say = Callable[[str], None]


class StackError(Exception):
    """A server could not be installed or started; the message says what to do."""


def run(argv: list[str], *, cwd: Path | None = None, what: str, say: Say) -> None:
    """Run an install step, showing its output only if it fails."""
    say(f"  {what}: {' '.join(argv)}")
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise StackError(f"{what} failed (exit {result.returncode}):\n{tail}")


def apt_install(packages: list[str], say: Say) -> None:
    """Install Debian packages (the stack's machines run as root; elsewhere, ask the user)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            f"missing {', '.join(packages)}: install them with your package manager "
            "(e.g. sudo apt-get install -y " + " ".join(packages) + ")"
        )
    env_apt = ["env", "DEBIAN_FRONTEND=noninteractive"]
    run([*env_apt, "apt-get", "update", "-q"], what="apt-get update", say=say)
    run(
        [*env_apt, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        what=f"install {' '.join(packages)}",
        say=say,
    )


class Server(ABC):
    """One server of the local stack."""

    name: str
    env_var: str
    stop_signal = signal.SIGTERM

    def __init__(self, stack_dir: Path, cache_dir: Path, repo_root: Path) -> None:
        self.stack_dir = stack_dir.resolve()
        self.cache_dir = cache_dir.resolve()
        self.repo_root = repo_root
        self.home = self.stack_dir / self.name
        self.process = ManagedProcess(
            name=self.name,
            pid_path=self.stack_dir / "run" / f"{self.name}.pid",
            log_path=self.stack_dir / "logs" / f"{self.name}.log",
            marker=str(self.home),
        )

    @property
    def external(self) -> bool:
        """Connection settings given in the environment: use that server, start nothing."""
        return bool(os.environ.get(self.env_var))

    @property
    def address(self) -> str:
        return os.environ.get(self.env_var) or self.local_address

    @property
    @abstractmethod
    def local_address(self) -> str: ...

    @abstractmethod
    def installed(self) -> bool: ...

    @abstractmethod
    def install(self, say: Say) -> None: ...

    @abstractmethod
    def start(self, say: Say) -> None:
        """Prepare state on first run and spawn the server detached."""

    @abstractmethod
    def probe(self) -> str | None:
        """None if the server answers a real request, else why not."""

    def after_ready(self, say: Say) -> None:  # noqa: B027 - optional hook
        """First-run set-up that needs the server up (e.g. create a database)."""


class Kafka(Server):
    name = "kafka"
    env_var = "TOMSTREAM_KAFKA_BOOTSTRAP_SERVERS"

    @property
    def local_address(self) -> str:
        return LOCAL_KAFKA_BOOTSTRAP

    @property
    def libs(self) -> Path:
        return self.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"

    def installed(self) -> bool:
        return (self.libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists()

    def install(self, say: Say) -> None:
        missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
        if missing:
            apt_install(["default-jre-headless", "maven"], say)
        staging = self.libs.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        run(
            [
                "mvn", "-B", "-q", "-f", str(self.repo_root / "tools" / "kafka" / "pom.xml"),
                "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
            ],
            what=f"resolve Kafka {KAFKA_VERSION} jars from Maven Central",
            say=say,
        )  # fmt: skip
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)

    def start(self, say: Say) -> None:
        data = self.home / "data"
        props = self.home / "server.properties"
        self.home.mkdir(parents=True, exist_ok=True)
        props.write_text(self._server_properties(data))
        log4j = self.home / "log4j.properties"
        log4j.write_text(_KAFKA_LOG4J)
        java = [
            "java", "-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{log4j}",
            "-Dkafka.logs.dir=" + str(self.home / "logs"), "-cp", f"{self.libs}/*",
        ]  # fmt: skip
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            run(
                [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(props), "--ignore-formatted"],
                what="format the KRaft log directory",
                say=say,
            )  # fmt: skip
        self.process.spawn([*java, "kafka.Kafka", str(props)], cwd=self.home)

    def _server_properties(self, data: Path) -> str:
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{LOCAL_KAFKA_CONTROLLER_PORT}",
                f"listeners=PLAINTEXT://127.0.0.1:{LOCAL_KAFKA_PORT},"
                f"CONTROLLER://127.0.0.1:{LOCAL_KAFKA_CONTROLLER_PORT}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{LOCAL_KAFKA_PORT}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=1",
                "auto.create.topics.enable=true",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "min.insync.replicas=1",
                "group.initial.rebalance.delay.ms=0",
                "log.retention.hours=-1",
                "",
            ]
        )

    def probe(self) -> str | None:
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient({"bootstrap.servers": self.address, "log_level": 0})
            admin.list_topics(timeout=3)
        except Exception as exc:  # KafkaException carries a KafkaError as its argument
            error = exc.args[0] if exc.args else exc
            return f"no metadata from {self.address}: {getattr(error, 'str', lambda: error)()}"
        return None


class Postgres(Server):
    name = "postgres"
    env_var = "TOMSTREAM_POSTGRES_DSN"
    stop_signal = signal.SIGINT  # "fast" shutdown: does not wait for clients to disconnect

    @property
    def local_address(self) -> str:
        return LOCAL_POSTGRES_DSN

    @property
    def run_as(self) -> str | None:
        # initdb and postgres refuse to run as root.
        return "postgres" if os.geteuid() == 0 else None

    def bindir(self) -> Path | None:
        candidates = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/postgres"),
            key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
        )
        return candidates[-1].parent if candidates else None

    def installed(self) -> bool:
        return self.bindir() is not None

    def install(self, say: Say) -> None:
        apt_install(["postgresql"], say)

    def _chown(self, path: Path) -> None:
        if self.run_as:
            uid, gid = pwd.getpwnam(self.run_as).pw_uid, grp.getgrnam(self.run_as).gr_gid
            os.chown(path, uid, gid)

    def start(self, say: Say) -> None:
        bindir = self.bindir()
        assert bindir is not None
        data, sockets = self.home / "data", self.home / "run"
        for directory in (self.home, sockets):
            directory.mkdir(parents=True, exist_ok=True)
            self._chown(directory)
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            argv = [str(bindir / "initdb"), "-D", str(data), "-U", "tomstream",
                    "--auth=trust", "-E", "UTF8", "--no-locale"]  # fmt: skip
            if self.run_as:
                argv = ["runuser", "-u", self.run_as, "--", *argv]
            run(argv, what="create the PostgreSQL cluster", say=say)
        self.process.spawn(
            [
                str(bindir / "postgres"), "-D", str(data),
                "-c", f"port={LOCAL_POSTGRES_PORT}",
                "-c", "listen_addresses=127.0.0.1",
                "-c", f"unix_socket_directories={sockets}",
                "-c", "max_connections=200",
                "-c", f"shared_buffers={_shared_buffers_mb()}MB",
            ],
            user=self.run_as,
        )  # fmt: skip

    def probe(self) -> str | None:
        import psycopg

        dsn = self.address if self.external else self._admin_dsn()
        try:
            with psycopg.connect(dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None

    def _admin_dsn(self) -> str:
        return LOCAL_POSTGRES_DSN.rsplit("/", 1)[0] + "/postgres"

    def after_ready(self, say: Say) -> None:
        import psycopg

        if self.external:
            return
        with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = 'tomstream'"
            ).fetchone()
            if not exists:
                conn.execute("CREATE DATABASE tomstream")
                say("  created database tomstream")


def _shared_buffers_mb() -> int:
    """PostgreSQL's own advice: a quarter of the memory, here at most 8 GB.

    With the former 256 MB, a 30-day gethottransients on the 1M-object benchmark read ~44,000
    pages per request from the OS cache (~3 µs each) instead of finding them in its buffers.
    """
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(128, min(memory // 4, 8 << 30) >> 20)


# Measured on insert load: NORMAL drops an fsync per commit (safe with WAL: an OS crash may
# lose the last commits, never corrupt), an in-memory statement journal drops a temp file
# per multi-row INSERT; together with the wrapper's lazy logging and GOGC=400 they halve
# FerretDB's CPU per document.
SQLITE_PRAGMAS = "&".join(
    f"_pragma={pragma}"
    for pragma in ("synchronous(NORMAL)", "temp_store(MEMORY)", "wal_autocheckpoint(10000)")
)


class FerretDB(Server):
    name = "ferretdb"
    env_var = "TOMSTREAM_MONGODB_URI"

    @property
    def local_address(self) -> str:
        return LOCAL_MONGODB_URI

    @property
    def binary(self) -> Path:
        # Keyed on our wrapper's source too: a changed main.go is a new build.
        source = self.repo_root / "tools" / "ferretdb"
        digest = hashlib.sha256(
            b"".join((source / name).read_bytes() for name in ("main.go", "go.mod", "go.sum"))
        ).hexdigest()[:12]
        return self.cache_dir / f"ferretdb-{FERRETDB_VERSION}" / f"tomstream-ferretdb-{digest}"

    def installed(self) -> bool:
        return self.binary.exists()

    def install(self, say: Say) -> None:
        if shutil.which("go") is None:
            raise StackError(
                "building FerretDB needs the Go toolchain (>= 1.24) on PATH: "
                "install it, or point TOMSTREAM_MONGODB_URI at a MongoDB server"
            )
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        partial = self.binary.with_suffix(".partial")
        run(
            ["go", "build", "-trimpath", "-o", str(partial), "."],
            cwd=self.repo_root / "tools" / "ferretdb",
            what=f"build FerretDB {FERRETDB_VERSION} from the Go module proxy",
            say=say,
        )
        partial.rename(self.binary)

    def start(self, say: Say) -> None:
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        self.process.spawn(
            [
                str(self.binary),
                f"-listen=127.0.0.1:{LOCAL_MONGODB_PORT}",
                "-handler=sqlite",
                f"-sqlite-url=file:{data}/?{SQLITE_PRAGMAS}",
                # FerretDB logs every unsupported command (e.g. pymongo's endSessions) as a
                # warning with the whole reply: only errors are worth a line.
                "-log-level=error",
            ]
        )

    def probe(self) -> str | None:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        try:
            with MongoClient(self.address, serverSelectionTimeoutMS=3000) as client:
                client.admin.command("ping")
        except PyMongoError as exc:
            return str(exc).split(",")[0]
        return None


_KAFKA_LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""
