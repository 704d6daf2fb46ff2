"""The container files agree with each other and with the service, checked without a Docker engine.

docker-compose.yml must be a valid compose file (`docker compose config`, or Debian's
`docker-compose config`, which `./dev setup` installs), and it, the Dockerfile, the Toxiproxy
config and deploy/target.toml must agree on ports, names, users and commands: the target file
reaches what the compose file publishes, every link goes through the proxy named for it, every
service's environment passes the service's own settings validation, and hadolint accepts the
Dockerfile. What needs an engine (building, starting, the drills on it) is not run here.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from harness.stack.base import load_target
from service.config import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("api", "relay", "worker-0", "worker-1")
SERVERS = {"postgres": "postgres:5432", "rabbitmq": "rabbitmq:5672"}


def compose_command() -> list[str]:
    """`docker compose` where the plugin answers, else Debian's docker-compose; neither fails."""
    plugin = ["docker", "compose"]
    if shutil.which("docker") and subprocess.run([*plugin, "version"], capture_output=True).returncode == 0:
        return plugin
    found = shutil.which("docker-compose")
    assert found, "neither `docker compose` nor docker-compose is installed (./dev setup installs it)"
    return [found]


@cache
def compose() -> dict[str, Any]:
    """The compose file as the compose tool resolves it (anchors merged, defaults interpolated)."""
    argv = [*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, cwd=ROOT, env={"PATH": "/usr/bin:/bin"}
    )
    assert done.returncode == 0, done.stderr
    resolved: dict[str, Any] = yaml.safe_load(done.stdout)
    return resolved


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    final_stage = text.rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for line in final_stage.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def published(service: str) -> dict[int, int]:
    """container port -> host port of a service."""
    ports: dict[int, int] = {}
    for entry in services()[service].get("ports", []):
        if isinstance(entry, dict):
            ports[int(entry["target"])] = int(entry["published"])
        else:
            *_, host, container = str(entry).removesuffix("/tcp").split(":")
            ports[int(container)] = int(host)
    return ports


def proxies() -> dict[str, dict[str, str]]:
    return {proxy["name"]: proxy for proxy in json.loads((ROOT / "deploy" / "toxiproxy.json").read_text())}


def test_the_compose_file_is_valid_and_has_the_whole_stack() -> None:
    assert set(services()) == {"postgres", "rabbitmq", "toxiproxy", "migrate", *RUNTIME}
    assert services()["rabbitmq"]["image"].startswith("rabbitmq:4.1-management")
    assert services()["postgres"]["image"].startswith("postgres:16")
    assert services()["toxiproxy"]["image"].startswith("ghcr.io/shopify/toxiproxy:")


def test_every_service_runs_a_console_script_of_the_project_from_the_one_image() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    commands = {name: services()[name]["command"] for name in ("migrate", *RUNTIME)}
    assert commands == {
        "migrate": ["ast-migrate"], "api": ["ast-api"], "relay": ["ast-relay"],
        "worker-0": ["ast-worker"], "worker-1": ["ast-worker"],
    }
    assert {command[0] for command in commands.values()} <= set(scripts)
    assert {services()[name]["image"] for name in commands} == {"ast-service:local"}
    assert all(Path(services()[name]["build"]["context"]).resolve() == ROOT for name in commands)


def test_the_image_runs_as_the_unprivileged_user_it_creates() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    uid = re.search(r"useradd [^\n]*--uid (\d+)", text)
    user = re.search(r"^USER (\S+)", text, re.MULTILINE)
    assert uid is not None
    assert user is not None
    assert user.group(1) == f"{uid.group(1)}:{uid.group(1)}"
    assert int(uid.group(1)) != 0
    assert "HEALTHCHECK" in text


def test_ports_agree_between_the_image_the_compose_file_and_the_probes() -> None:
    env = dockerfile_env()
    api_port, health_port = int(env["API_PORT"]), int(env["WORKER_HEALTH_PORT"])
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert exposed is not None
    assert {int(port) for port in exposed.group(1).split()} == {api_port, health_port}
    assert env["WORKER_HEALTH_HOST"] == "0.0.0.0"
    api = services()["api"]
    assert int(api["environment"]["API_PORT"]) == api_port
    assert api_port in published("api")
    assert f":{api_port}/ready" in " ".join(api["healthcheck"]["test"])
    for name in ("worker-0", "worker-1"):
        worker = services()[name]
        assert int(worker["environment"]["WORKER_HEALTH_PORT"]) == health_port
        assert worker["environment"]["WORKER_ID"] == name
        assert health_port in published(name)
        assert f":{health_port}/ready" in " ".join(worker["healthcheck"]["test"])


def test_every_runtime_link_goes_through_its_own_proxy() -> None:
    known = proxies()
    for name in RUNTIME:
        env = services()[name]["environment"]
        for server, url in (("postgres", env["POSTGRES_URL"]), ("rabbitmq", env["RABBIT_URL"])):
            link = urlsplit(url)
            proxy = known[f"{name}-{server}"]
            assert link.hostname == "toxiproxy"
            assert proxy["listen"] == f"0.0.0.0:{link.port}"
            assert proxy["upstream"] == SERVERS[server]
    assert set(known) == {f"{name}-{server}" for name in RUNTIME for server in SERVERS}
    assert set(load_target(ROOT / "deploy" / "target.toml").toxiproxy_proxies) == set(known)


def test_the_runtime_connects_as_ast_app_and_the_migration_as_ast_migrate() -> None:
    roles = (ROOT / "deploy" / "postgres" / "10-roles.sh").read_text()
    assert set(re.findall(r"CREATE ROLE (\w+)", roles)) == {"ast_migrate", "ast_app"}
    assert urlsplit(services()["migrate"]["environment"]["POSTGRES_URL"]).username == "ast_migrate"
    for name in RUNTIME:
        assert urlsplit(services()[name]["environment"]["POSTGRES_URL"]).username == "ast_app"
    mounts = " ".join(str(volume) for volume in services()["postgres"]["volumes"])
    assert "docker-entrypoint-initdb.d" in mounts


@pytest.mark.parametrize("name", ["migrate", *RUNTIME])
def test_each_services_environment_passes_the_services_own_validation(name: str) -> None:
    env = {**dockerfile_env(), **services()[name]["environment"]}
    code = "from service.config import settings_or_exit; settings_or_exit()"
    done = subprocess.run([sys.executable, "-c", code], env={**env, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    not_settings = {"PATH", "PYTHONUNBUFFERED", "AST_PROBE_URL"}
    settings = {key.lower() for key in env if key not in not_settings and not key.startswith("OTEL_")}
    assert settings <= Settings.model_fields.keys()
    assert env["OTEL_TRACES_EXPORTER"] == "none"  # off unless whoever starts the stack asks


def test_the_target_file_reaches_what_the_compose_file_publishes() -> None:
    target = load_target(ROOT / "deploy" / "target.toml")
    rabbit_env = services()["rabbitmq"]["environment"]
    assert urlsplit(target.api_url).port == published("api")[int(dockerfile_env()["API_PORT"])]
    assert urlsplit(target.postgres_dsn).port == published("postgres")[5432]
    assert urlsplit(target.postgres_dsn).username == "ast_migrate"  # the suites truncate tables
    assert urlsplit(target.amqp_url).port == published("rabbitmq")[5672]
    assert urlsplit(target.management_url).port == published("rabbitmq")[15672]
    assert target.toxiproxy_url is not None
    assert urlsplit(target.toxiproxy_url).port == published("toxiproxy")[8474]
    for url in (target.amqp_url, target.management_url):
        assert (urlsplit(url).username, urlsplit(url).password) == (
            rabbit_env["RABBITMQ_DEFAULT_USER"], rabbit_env["RABBITMQ_DEFAULT_PASS"]
        )
    assert target.reset_allowed


def test_every_fault_command_acts_on_a_service_of_the_compose_file() -> None:
    target = load_target(ROOT / "deploy" / "target.toml")
    assert set(dict(target.fault_commands)) <= set(target.faults_allowed)
    for name, command in target.fault_commands:
        acted_on = re.findall(r"(?:kill -s \w+|start|restart) ([\w-]+)", command)
        assert acted_on, (name, command)
        assert set(acted_on) <= set(services()), (name, command)
        assert all(part.startswith("docker compose -f docker-compose.yml ")
                   for part in command.split(" && ") if not part.startswith("sleep")), command


def test_hadolint_accepts_the_dockerfile() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    argv = [str(hadolint), str(ROOT / "Dockerfile")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def runtime_distributions() -> set[str]:
    """The project's runtime dependencies and theirs (what the image installs), normalized names."""
    from importlib import metadata

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(spec) for spec in project["dependencies"]]
    found: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        name = norm(requirement.name)
        if name in found:
            continue
        found.add(name)
        for spec in metadata.requires(requirement.name) or []:
            nested = Requirement(spec)
            if nested.marker is None or nested.marker.evaluate({"extra": ""}):
                wanted.append(nested)
    return found


def absolute_imports(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module]
    return []


def test_everything_the_service_imports_is_a_runtime_dependency() -> None:
    """The image installs only the runtime dependencies: an import of a dev-only package in service/
    (a test tool, a linter's stubs) would pass every test here and fail in the container."""
    from importlib import metadata

    providers = {module: [re.sub(r"[-_.]+", "-", d).lower() for d in dists]
                 for module, dists in metadata.packages_distributions().items()}
    runtime = runtime_distributions()
    missing: dict[str, str] = {}
    for path in (ROOT / "service").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for name in absolute_imports(node):
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "service":
                    continue
                if not set(providers.get(top, [])) & runtime:
                    missing[top] = str(path.relative_to(ROOT))
    assert missing == {}
