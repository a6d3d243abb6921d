"""Every deployment file checked against its schema, plus what the schemas cannot say.

- Dockerfile: hadolint clean; multi-stage, slim runtime without compilers, non-root UID 1000,
  port 5000, HEALTHCHECK, tini as PID 1.
- docker-compose.yml: the Compose specification's own schema (vendored in check-jsonschema).
- deploy/railway/*.json: deploy/schemas/railway.schema.json (written from Railway's reference).
- deploy/ecs/*.json and services/*.json: botocore's ECS service model (RegisterTaskDefinition
  and CreateService input shapes), offline; deploy/ecs/load-balancer/*.json: its ELBv2 model
  (CreateTargetGroup, ModifyTargetGroupAttributes, CreateRule); deploy/ecs/schedules/*.json:
  its EventBridge Scheduler model (CreateSchedule).
- deploy/k8s/*.yaml: kubernetes-validate's bundled OpenAPI schemas, strict.
Each validator is also shown to reject a broken copy, so a pass means something.
"""

import copy
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import botocore.session
import kubernetes_validate
import pytest
import yaml
from botocore.exceptions import ParamValidationError
from botocore.validate import ParamValidator
from podman_compose import rec_subs

from devstack.env import base_env

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.33.0"


# --- Dockerfile -------------------------------------------------------------------------------


def _stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split by FROM."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.replace("\\\n", " ").splitlines() if not line.startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.startswith("FROM "):
            stages.append([])
        if stages and line.strip():
            stages[-1].append(line.strip())
    return stages


@pytest.mark.checklist("P2.4", "P2.6", "P11.5", configured=True)
def test_hadolint_passes():
    result = subprocess.run(
        [BIN / "hadolint", "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.checklist(
    "P2.1",
    "P2.2",
    "P2.3",
    "P2.4",
    "P2.6",
    "P2.10",
    "P2.11",
    "P6.13",
    "P8.1",
    "P10.15",
    "P11.5",
    configured=True,
)
def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.13-slim-trixie$", text, re.MULTILINE)
    builder, runtime = _stages()
    assert builder[0] == "FROM ${PYTHON_IMAGE} AS builder"
    assert runtime[0] == "FROM ${PYTHON_IMAGE} AS runtime"
    assert any("uv sync --frozen --no-dev" in line for line in builder)
    assert any("--mount=type=cache" in line for line in builder)
    runtime_text = "\n".join(runtime)
    for compiler in ("build-essential", "gcc", "-dev ", "libpq-dev"):
        assert compiler not in runtime_text, compiler
    for library in ("libpq5", "libgdal", "libgeos-c1", "libproj", "redis-tools", "netcat", "tini"):
        assert library in runtime_text, library
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert "useradd --uid 1000" in runtime_text
    users = [line for line in runtime if line.startswith("USER ")]
    assert users == ["USER 1000:1000"]
    assert "EXPOSE 5000" in runtime
    assert any(line.startswith("HEALTHCHECK ") and "healthcheck.sh" in line for line in runtime)
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/app/entrypoint.sh"]' in runtime
    healthcheck = (DEPLOY / "docker" / "healthcheck.sh").read_text()
    assert "nc -z" in healthcheck and "/health/" in healthcheck


@pytest.mark.checklist("P10.16", configured=True)
def test_dockerignore_keeps_secrets_and_local_state_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for entry in (".git", ".venv", ".tools", ".env", "media", "staticfiles", "**/__pycache__"):
        assert entry in ignored, entry


@pytest.mark.checklist("P10.16", configured=True)
def test_the_image_code_is_roots_and_the_app_user_owns_only_what_it_writes():
    runtime = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    copies = [line for line in runtime if line.startswith("COPY ") and "--from=" not in line]
    # the code is copied without --chown: root's, readable, not writable by UID 1000
    assert "COPY . /app" in copies and not [line for line in copies if "--chown" in line]
    chown = next(line for line in runtime if "chown " in line)
    owned = chown.split("chown appuser:appuser", 1)[1].split()
    assert owned == ["/app/staticfiles", "/app/media", "/tmp/prometheus"], owned  # noqa: S108
    assert runtime.index(next(line for line in runtime if line.startswith("USER "))) > max(
        runtime.index(line) for line in copies
    )


# --- Compose ----------------------------------------------------------------------------------


def _check_jsonschema(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "check-jsonschema", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.checklist("P8.16", "P11.7", configured=True)
def test_compose_file_matches_the_compose_specification(tmp_path):
    result = _check_jsonschema("--builtin-schema", "vendor.compose-spec", "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    broken["services"]["db"]["healthcheck"]["interval"] = ["5s"]
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(broken))
    rejected = _check_jsonschema(
        "--builtin-schema", "vendor.compose-spec", str(tmp_path / "compose.yml")
    )
    assert rejected.returncode == 1


@pytest.mark.checklist(
    "P8.16",
    "P8.17",
    "P8.18",
    "P8.19",
    "P8.20",
    "P8.21",
    "P8.22",
    "P8.23",
    "P11.7",
    configured=True,
)
def test_compose_services():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"db", "redis", "web", "worker", "beat"} <= set(services)
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
    for name in ("web", "sockets", "worker", "worker-high", "beat"):
        service = services[name]
        assert service["depends_on"] == {
            "db": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }, name
        assert service["env_file"][0]["path"] == ".env"
        assert any(volume.startswith("./:/app") for volume in service["volumes"])
        assert "backend" in service["networks"]
    assert services["web"]["environment"]["IS_PRIMARY"] == "1"
    assert services["worker"]["environment"]["RUN_GUNICORN"] == "0"
    assert services["worker-high"]["environment"]["CELERY_QUEUES"] == "high"
    assert services["beat"]["command"] == ["beat"]
    assert services["beat"]["environment"]["IS_PRIMARY"] == "1"
    # db and redis are not on the network whose port is published.
    assert services["db"]["networks"] == ["backend"] == services["redis"]["networks"]
    assert "frontend" in services["web"]["networks"]
    assert "frontend" in services["sockets"]["networks"]


def _compose_resolved(**variables: str) -> dict:
    """web's and sockets' command, environment and ports in docker-compose.yml, with ${...}
    resolved as podman-compose resolves them (the Compose test's runner), from `variables`
    alone (no .env, no real environment)."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    keys = ("command", "environment", "ports")
    return rec_subs(
        {name: {k: services[name][k] for k in keys} for name in WEB_AND_SOCKETS}, variables
    )


WEB_AND_SOCKETS = ("web", "sockets")


@pytest.mark.checklist("P8.16", "P11.7", configured=True)
def test_compose_publishes_the_sockets_and_tells_web_where():
    services = _compose_resolved()
    sockets = services["sockets"]
    assert sockets["command"] == ["sockets"]
    assert sockets["environment"]["PORT"] == "5000"
    assert sockets["ports"] == ["5001:5000"]
    assert services["web"]["environment"]["SOCKETS_URL"] == "ws://localhost:5001"
    # the published port moves, and web's SOCKETS_URL with it; .env may set it outright
    moved = _compose_resolved(SOCKETS_PORT="6101")
    assert moved["sockets"]["ports"] == ["6101:5000"]
    assert moved["web"]["environment"]["SOCKETS_URL"] == "ws://localhost:6101"
    told = _compose_resolved(SOCKETS_URL="wss://sockets.example.com")
    assert told["web"]["environment"]["SOCKETS_URL"] == "wss://sockets.example.com"
    # only web tells the apps, and web migrates: sockets waits for the schema
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    told_by = {name for name, s in raw.items() if "SOCKETS_URL" in s.get("environment", {})}
    assert told_by == {"web"}
    assert "IS_PRIMARY" not in raw["sockets"]["environment"]


# --- Railway ----------------------------------------------------------------------------------

RAILWAY_SCHEMA = str(DEPLOY / "schemas" / "railway.schema.json")
RAILWAY_FILES = sorted((DEPLOY / "railway").glob("*.json"))


def test_railway_configs_match_the_schema(tmp_path):
    assert {path.stem for path in RAILWAY_FILES} == {
        "web",
        "sockets",
        "worker",
        "worker-high",
        "beat",
        "backup",
    }
    result = _check_jsonschema("--schemafile", RAILWAY_SCHEMA, *map(str, RAILWAY_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = json.loads((DEPLOY / "railway" / "web.json").read_text())
    broken["deploy"]["drainingSeconds"] = "35"  # Railway's parser rejects strings here
    (tmp_path / "railway.json").write_text(json.dumps(broken))
    rejected = _check_jsonschema("--schemafile", RAILWAY_SCHEMA, str(tmp_path / "railway.json"))
    assert rejected.returncode == 1


@pytest.mark.checklist("P8.1", "P8.6", configured=True)
def test_railway_roles():
    configs = {path.stem: json.loads(path.read_text())["deploy"] for path in RAILWAY_FILES}
    web = configs["web"]
    assert web["preDeployCommand"] == ["/app/entrypoint.sh migrate"]
    assert web["healthcheckPath"] == "/health/"
    assert web["startCommand"].startswith("/usr/bin/tini -- ")  # tini stays PID 1
    assert configs["worker"]["startCommand"].endswith("entrypoint.sh worker")
    assert "CELERY_QUEUES=high " in configs["worker-high"]["startCommand"]
    assert "IS_PRIMARY=1 " in configs["beat"]["startCommand"]
    assert configs["beat"]["numReplicas"] == 1
    assert configs["beat"]["overlapSeconds"] == 0  # never two beats at once
    sockets = configs["sockets"]
    assert sockets["startCommand"] == "/usr/bin/tini -- /app/entrypoint.sh sockets"
    assert sockets["healthcheckPath"] == "/health/"
    assert "preDeployCommand" not in sockets  # web's migrates; sockets waits for the schema
    assert sockets["numReplicas"] >= 2 and sockets["overlapSeconds"] > 0


def test_railway_docs_give_web_the_sockets_domain():
    """Railway's config files hold no variables: docs/deploy.md's Railway steps set them, and
    web's SOCKETS_URL must name the sockets service's domain in Railway's reference syntax."""
    docs = (ROOT / "docs" / "deploy.md").read_text()
    railway = docs.split("\n## Railway\n", 1)[1].split("\n## ", 1)[0]
    services = re.search(r"Create \w+ services from this repository: (.+?)\.", railway, re.S)
    named = set(re.findall(r"`([\w-]+)`", services.group(1)))
    assert named == {path.stem for path in RAILWAY_FILES}, named
    assert "`SOCKETS_URL=wss://${{sockets.RAILWAY_PUBLIC_DOMAIN}}`" in railway
    assert re.search(r"On \*\*web\*\* only:\s+`SOCKETS_URL=", railway)


# --- ECS --------------------------------------------------------------------------------------

_ecs = botocore.session.get_session().get_service_model("ecs")
TASK_DEFINITIONS = sorted((DEPLOY / "ecs").glob("*.json"))
SERVICES = sorted((DEPLOY / "ecs" / "services").glob("*.json"))


def _web_marked(path: Path, *line_ids: str):
    """The web file's case carries the checklist lines only web's assertions prove."""
    return (
        pytest.param(path, marks=pytest.mark.checklist(*line_ids, configured=True))
        if path.stem == "web"
        else path
    )


def _validate_ecs(operation: str, params: dict) -> None:
    report = ParamValidator().validate(params, _ecs.operation_model(operation).input_shape)
    if report.has_errors():
        raise ParamValidationError(report=report.generate_report())


@pytest.mark.parametrize(
    "path",
    # web alone is behind the load balancer and its target group's health check
    [_web_marked(path, "P8.10", "P8.15") for path in TASK_DEFINITIONS],
    ids=lambda p: p.stem,
)
@pytest.mark.checklist("P8.8", "P8.9", "P8.13", "P8.14", "P12.4", configured=True)
def test_ecs_task_definition_matches_register_task_definition(path):
    definition = json.loads(path.read_text())
    _validate_ecs("RegisterTaskDefinition", definition)
    (container,) = definition["containerDefinitions"]
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["user"] == "1000:1000"
    secrets = {secret["name"]: secret["valueFrom"] for secret in container["secrets"]}
    for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        assert secrets[name].startswith("arn:aws:secretsmanager:"), name
    environment = {item["name"] for item in container["environment"]}
    assert not environment & set(secrets), "a secret must not also be a plain variable"
    assert container["stopTimeout"] <= 120
    assert definition["taskRoleArn"] and definition["executionRoleArn"]
    if path.stem == "web":
        assert container["portMappings"][0]["containerPort"] == 5000
        assert container["healthCheck"]["command"] == ["CMD", "/app/deploy/docker/healthcheck.sh"]
        assert container["stopTimeout"] >= 30
    if path.stem.startswith("worker"):
        assert "healthCheck" in container
    if path.stem == "sockets":
        assert container["command"] == ["sockets"]
        assert container["portMappings"][0]["containerPort"] == 5000
        assert container["healthCheck"]["command"] == ["CMD", "/app/deploy/docker/healthcheck.sh"]
        # the same settings and secrets as web, its only differences the role and its sizing
        web = _ecs_container("web")
        assert container["secrets"] == web["secrets"]
        sizing = {"RUN_GUNICORN", "GUNICORN_WORKERS"}
        web_env = {k: v for k, v in _env(web["environment"]).items() if k not in sizing}
        own_env = _env(container["environment"])
        assert {k: v for k, v in own_env.items() if k not in sizing} == web_env
        assert int(own_env["GUNICORN_WORKERS"]) >= 2  # one leaving stops accepting as it drains


@pytest.mark.checklist("P8.8", configured=True)
def test_ecs_validation_rejects_a_broken_task_definition():
    broken = json.loads((DEPLOY / "ecs" / "web.json").read_text())
    del broken["containerDefinitions"][0]["name"]  # not required by the API, but misspelled:
    broken["containerDefinitions"][0]["nmae"] = "web"
    with pytest.raises(ParamValidationError, match="nmae"):
        _validate_ecs("RegisterTaskDefinition", broken)
    broken = copy.deepcopy(json.loads((DEPLOY / "ecs" / "web.json").read_text()))
    broken["containerDefinitions"][0]["stopTimeout"] = "35"
    with pytest.raises(ParamValidationError, match="stopTimeout"):
        _validate_ecs("RegisterTaskDefinition", broken)


@pytest.mark.parametrize(
    "path", [_web_marked(path, "P8.10") for path in SERVICES], ids=lambda p: p.stem
)
def test_ecs_service_matches_create_service(path):
    service = json.loads(path.read_text())
    _validate_ecs("CreateService", service)
    assert (DEPLOY / "ecs" / f"{path.stem}.json").is_file(), "service without a task definition"
    if path.stem == "beat":
        assert service["desiredCount"] == 1
        # The old beat stops before the new one starts.
        assert service["deploymentConfiguration"]["maximumPercent"] == 100
        assert service["deploymentConfiguration"]["minimumHealthyPercent"] == 0
    if path.stem in ("web", "sockets"):
        (balancer,) = service["loadBalancers"]
        assert balancer["containerName"] == path.stem
        assert balancer["containerPort"] == 5000
        assert f"targetgroup/delivery-{path.stem}/" in balancer["targetGroupArn"]


_elbv2 = botocore.session.get_session().get_service_model("elbv2")
LOAD_BALANCER = DEPLOY / "ecs" / "load-balancer"


def _validate_elbv2(operation: str, params: dict) -> None:
    report = ParamValidator().validate(params, _elbv2.operation_model(operation).input_shape)
    if report.has_errors():
        raise ParamValidationError(report=report.generate_report())


def _load_balancer(name: str) -> dict:
    return json.loads((LOAD_BALANCER / f"{name}.json").read_text())


def test_the_alb_sends_ws_to_the_sockets_target_group_which_drains_longer_than_the_sockets():
    group = _load_balancer("sockets-target-group")
    attributes = _load_balancer("sockets-target-group-attributes")
    rule = _load_balancer("sockets-listener-rule")
    _validate_elbv2("CreateTargetGroup", group)
    _validate_elbv2("ModifyTargetGroupAttributes", attributes)
    _validate_elbv2("CreateRule", rule)
    assert {path.name for path in LOAD_BALANCER.iterdir()} == {
        "sockets-target-group.json",
        "sockets-target-group-attributes.json",
        "sockets-listener-rule.json",
    }
    # the group: awsvpc tasks by address, on the sockets' port, checked on /health/
    service = _ecs_service("sockets")
    (balancer,) = service["loadBalancers"]
    assert (group["TargetType"], group["Port"]) == ("ip", balancer["containerPort"])
    assert (group["HealthCheckPath"], group["Matcher"]) == ("/health/", {"HttpCode": "200"})
    assert balancer["targetGroupArn"].split(":targetgroup/")[1].startswith(f"{group['Name']}/")
    # the rule: /ws/* forwarded to that group (everything else stays on the listener's
    # default, web's)
    (condition,) = rule["Conditions"]
    assert condition == {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/ws/*"]}}
    (action,) = rule["Actions"]
    assert (action["Type"], action["TargetGroupArn"]) == ("forward", balancer["targetGroupArn"])
    # the group's deregistration delay: longer than the sockets' drain
    assert attributes["TargetGroupArn"] == balancer["targetGroupArn"]
    delay = {a["Key"]: a["Value"] for a in attributes["Attributes"]}
    assert int(delay["deregistration_delay.timeout_seconds"]) > _sockets_conf()["drain_seconds"]
    # and the validation rejects a misspelled rule, so the pass means something
    broken = copy.deepcopy(rule)
    broken["Conditions"][0]["PathPatternConfig"]["Value"] = ["/ws/*"]
    with pytest.raises(ParamValidationError, match="Value"):
        _validate_elbv2("CreateRule", broken)


# --- Kubernetes -------------------------------------------------------------------------------

K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))


def _resources() -> list[dict]:
    return [doc for path in K8S_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.checklist("P6.14", configured=True)
def test_kubernetes_manifests_validate_strictly():
    assert len(K8S_FILES) >= 6
    for resource in _resources():
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
    broken = next(
        r
        for r in _resources()
        if r["kind"] == "Deployment" and r["metadata"]["name"] == "delivery-web"
    )
    broken = copy.deepcopy(broken)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.checklist("P6.14", "P10.15", "P12.6", configured=True)
def test_kubernetes_roles():
    resources = _resources()
    by_kind_name = {(r["kind"], r["metadata"]["name"]): r for r in resources}
    web = by_kind_name[("Deployment", "delivery-web")]["spec"]["template"]["spec"]
    (container,) = web["containers"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health/", probe
    assert container["ports"][0]["containerPort"] == 5000
    assert web["terminationGracePeriodSeconds"] > 30
    assert web["securityContext"]["runAsNonRoot"] is True

    job = by_kind_name[("Job", "delivery-migrate")]["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["migrate"]
    assert job["restartPolicy"] == "Never"

    beat = by_kind_name[("Deployment", "delivery-beat")]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate"
    assert {"name": "IS_PRIMARY", "value": "1"} in beat["template"]["spec"]["containers"][0]["env"]

    worker = by_kind_name[("Deployment", "delivery-worker")]["spec"]["template"]["spec"]
    env = {item["name"]: item["value"] for item in worker["containers"][0]["env"]}
    assert env["RUN_GUNICORN"] == "0"
    high = by_kind_name[("Deployment", "delivery-worker-high")]["spec"]["template"]["spec"]
    assert {"name": "CELERY_QUEUES", "value": "high"} in high["containers"][0]["env"]

    scaled = {
        r["spec"]["scaleTargetRef"]["name"]
        for r in resources
        if r["kind"] == "HorizontalPodAutoscaler"
    }
    # never beat; nor the sockets (a scale-down cuts every socket of the pod it removes)
    assert scaled == {"delivery-web", "delivery-worker"}
    config = by_kind_name[("ConfigMap", "delivery-config")]["data"]
    # the migrate Job migrates, nobody else: IS_PRIMARY defaults to 0, and only beat's own env
    # sets it (to 1), so no runtime has two values to choose between
    assert "IS_PRIMARY" not in config


def test_kubernetes_sockets_are_their_own_deployment_and_the_ingress_routes_ws_to_them():
    resources = _resources()
    by_kind_name = {(r["kind"], r["metadata"]["name"]): r for r in resources}
    deployment = by_kind_name[("Deployment", "delivery-sockets")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "sockets"
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    spec = deployment["spec"]["template"]["spec"]
    web = by_kind_name[("Deployment", "delivery-web")]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (web_container,) = web["containers"]
    assert container["args"] == ["sockets"]
    assert container["image"] == web_container["image"]
    assert container["envFrom"] == web_container["envFrom"]
    assert container["ports"] == web_container["ports"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health/", "port": "http"}, probe
    assert spec["securityContext"] == web["securityContext"]
    assert container["securityContext"] == web_container["securityContext"]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    # memory for every worker's SOCKETS_MAX_MEMORY_MB and the master
    workers = int(_env(container["env"])["GUNICORN_WORKERS"])
    assert workers >= 2  # one leaving past its memory stops accepting while it drains
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi") and int(limit[:-2]) > workers * _sockets_conf()["max_memory_mb"]
    # the Service in front of those pods, and a disruption budget like web's
    service = by_kind_name[("Service", "delivery-sockets")]["spec"]
    assert service["selector"] == labels
    assert service["ports"][0]["targetPort"] == "http"
    budget = by_kind_name[("PodDisruptionBudget", "delivery-sockets")]["spec"]
    assert budget["selector"]["matchLabels"] == labels and budget["minAvailable"] >= 1

    # the Ingress: /ws/ to the sockets, everything else to web, the socket timeouts kept
    (ingress,) = [r for r in resources if r["kind"] == "Ingress"]
    annotations = ingress["metadata"]["annotations"]
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{name}"]) >= 3600, name
    (rule,) = ingress["spec"]["rules"]
    routes = {
        (path["path"], path["pathType"]): path["backend"]["service"]
        for path in rule["http"]["paths"]
    }
    assert routes == {
        ("/ws/", "Prefix"): {"name": "delivery-sockets", "port": {"name": "http"}},
        ("/", "Prefix"): {"name": "delivery-web", "port": {"name": "http"}},
    }


# --- Across platforms: the same roles, defaults and stop times everywhere ---------------------

# How long each role needs to stop cleanly: gunicorn_conf.py's graceful_timeout default
# (test_gunicorn_conf checks it) and Celery's soft shutdown (checked below, from the app).
WEB_GRACEFUL_SECONDS = 30
WORKER_SOFT_SHUTDOWN_SECONDS = 25
HARD_EXIT_MARGIN_SECONDS = 15  # core.worker_liveness's
WORKERS = ("worker", "worker-high")


def _sockets_conf() -> dict:
    """gunicorn_conf.py's values for the sockets role, loaded as gunicorn loads it."""
    load = (
        "import json, runpy; c = runpy.run_path('gunicorn_conf.py'); "
        "print(json.dumps({k: c[k] for k in ('graceful_timeout', 'drain_seconds')}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", load],
        cwd=ROOT,
        env=base_env(SERVER_ROLE="sockets", PROMETHEUS_MULTIPROC_DIR="/tmp/delivery-conf-test"),  # noqa: S108
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    worker = (ROOT / "config" / "workers.py").read_text()
    # the worker's default: os.environ.get("SOCKETS_MAX_MEMORY_MB", "512") or ... ) or 512
    max_memory = re.search(r'"SOCKETS_MAX_MEMORY_MB"(?:, "|\) or )(\d+)', worker)
    return {**json.loads(result.stdout), "max_memory_mb": int(max_memory.group(1))}


def _runtime_env() -> dict[str, str]:
    """The ENV the runtime image starts every container with."""
    _, runtime = _stages()
    env: dict[str, str] = {}
    for line in runtime:
        if line.startswith("ENV "):
            env.update(pair.partition("=")[::2] for pair in shlex.split(line[4:]))
    return env


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def _ecs_container(stem: str) -> dict:
    (container,) = json.loads((DEPLOY / "ecs" / f"{stem}.json").read_text())["containerDefinitions"]
    return container


def _ecs_service(stem: str) -> dict:
    return json.loads((DEPLOY / "ecs" / "services" / f"{stem}.json").read_text())


def _env(items: list[dict]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in items}


def _k8s_deployment(name: str) -> dict:
    return next(
        r for r in _resources() if r["kind"] == "Deployment" and r["metadata"]["name"] == name
    )


def _k8s_container(name: str) -> dict:
    (container,) = _k8s_deployment(name)["spec"]["template"]["spec"]["containers"]
    return container


def _railway(stem: str) -> dict:
    return json.loads((DEPLOY / "railway" / f"{stem}.json").read_text())["deploy"]


def _seconds(duration: str) -> int:
    assert re.fullmatch(r"\d+s", duration), duration
    return int(duration[:-1])


@pytest.mark.checklist("P7.1", "P7.8", "P7.10", "P8.1", configured=True)
def test_the_image_runs_production_web_on_port_5000_unless_a_service_says_otherwise():
    env = _runtime_env()
    assert (env["DJANGO_ENV"], env["PORT"], env["RUN_GUNICORN"]) == ("production", "5000", "1")
    # set per service, never baked into the image: the primary, secrets, a debug switch
    for name in ("IS_PRIMARY", "DEBUG", "DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        assert name not in env, name
    # and the platforms that name DJANGO_ENV themselves say production too
    for path in TASK_DEFINITIONS:
        assert _env(_ecs_container(path.stem)["environment"])["DJANGO_ENV"] == "production"
    config = next(r for r in _resources() if r["kind"] == "ConfigMap")
    assert config["data"]["DJANGO_ENV"] == "production"


@pytest.mark.checklist("P5.16", "P12.10", "P12.11", configured=True)
def test_web_services_run_gunicorn_and_worker_services_run_celery_on_every_platform():
    compose = _compose()
    assert compose["web"]["command"] == ["web"]
    assert compose["web"]["environment"]["RUN_GUNICORN"] == "1"
    web = _ecs_container("web")
    assert (web["command"], _env(web["environment"])["RUN_GUNICORN"]) == (["web"], "1")
    k8s_web = _k8s_container("delivery-web")
    assert (k8s_web["args"], _env(k8s_web["env"])["RUN_GUNICORN"]) == (["web"], "1")
    assert _railway("web")["startCommand"].endswith("/app/entrypoint.sh web")
    # and the sockets role: its own service on every platform
    assert compose["sockets"]["command"] == ["sockets"]
    assert _ecs_container("sockets")["command"] == ["sockets"]
    assert _k8s_container("delivery-sockets")["args"] == ["sockets"]
    assert _railway("sockets")["startCommand"].endswith("/app/entrypoint.sh sockets")
    for name in WORKERS:
        assert compose[name]["command"] == ["worker"], name
        assert compose[name]["environment"]["RUN_GUNICORN"] == "0", name
        worker = _ecs_container(name)
        assert (worker["command"], _env(worker["environment"])["RUN_GUNICORN"]) == (
            ["worker"],
            "0",
        )
        k8s_worker = _k8s_container(f"delivery-{name}")
        assert (k8s_worker["args"], _env(k8s_worker["env"])["RUN_GUNICORN"]) == (["worker"], "0")
        assert _railway(name)["startCommand"].endswith("/app/entrypoint.sh worker"), name


@pytest.mark.checklist("P12.9", configured=True)
def test_only_services_that_run_a_single_instance_are_primary():
    replicas: dict[tuple[str, str], int] = {}
    for name, service in _compose().items():
        if service.get("environment", {}).get("IS_PRIMARY") == "1":
            replicas[("compose", name)] = service.get("deploy", {}).get("replicas", 1)
    for path in TASK_DEFINITIONS:
        if _env(_ecs_container(path.stem)["environment"]).get("IS_PRIMARY") == "1":
            replicas[("ecs", path.stem)] = _ecs_service(path.stem)["desiredCount"]
    for resource in _resources():
        if resource["kind"] == "Deployment":
            (container,) = resource["spec"]["template"]["spec"]["containers"]
            if _env(container.get("env", [])).get("IS_PRIMARY") == "1":
                replicas[("k8s", resource["metadata"]["name"])] = resource["spec"]["replicas"]
    for path in RAILWAY_FILES:
        if "IS_PRIMARY=1 " in _railway(path.stem)["startCommand"]:
            replicas[("railway", path.stem)] = _railway(path.stem)["numReplicas"]

    # beat is the primary everywhere (it refuses to start otherwise) ...
    for beat in (
        ("compose", "beat"),
        ("ecs", "beat"),
        ("k8s", "delivery-beat"),
        ("railway", "beat"),
    ):
        assert beat in replicas, beat
    # ... and every primary is a single instance; scaled-out web never is primary (a migrate
    # step migrates there), only Compose's one web container is
    assert {place: count for place, count in replicas.items() if count != 1} == {}
    assert set(replicas) - {("compose", "beat"), ("ecs", "beat")} == {
        ("compose", "web"),
        ("k8s", "delivery-beat"),
        ("railway", "beat"),
    }


@pytest.mark.checklist("P12.12", "P12.13", configured=True)
def test_web_is_replaced_a_few_instances_at_a_time_behind_its_health_check():
    # ECS: new tasks start before old ones stop, and a release that never turns healthy on
    # the target group's /health/ is rolled back
    ecs = _ecs_service("web")
    deployment = ecs["deploymentConfiguration"]
    assert ecs["desiredCount"] >= 2
    assert (deployment["minimumHealthyPercent"], deployment["maximumPercent"]) == (100, 200)
    assert deployment["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert ecs["healthCheckGracePeriodSeconds"] > 0
    for name in WORKERS:
        worker = _ecs_service(name)["deploymentConfiguration"]
        assert worker["minimumHealthyPercent"] >= 50, name
        assert worker["deploymentCircuitBreaker"]["rollback"] is True, name
    # Kubernetes: one new pod at a time, none taken away before its replacement is ready
    web = _k8s_deployment("delivery-web")["spec"]
    assert web["replicas"] >= 2
    assert web["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert _k8s_container("delivery-web")["readinessProbe"]["httpGet"]["path"] == "/health/"
    budget = next(
        r
        for r in _resources()
        if r["kind"] == "PodDisruptionBudget" and r["metadata"]["name"] == "delivery-web"
    )
    assert budget["spec"]["minAvailable"] >= 1
    # Railway: the new deployment answers /health/ before traffic moves, old and new overlap
    railway = _railway("web")
    assert railway["numReplicas"] >= 2
    assert railway["healthcheckPath"] == "/health/"
    assert railway["overlapSeconds"] > 0
    # the sockets are replaced the same way on each platform
    sockets = _ecs_service("sockets")
    assert sockets["desiredCount"] >= 2
    assert sockets["deploymentConfiguration"] == deployment
    assert sockets["healthCheckGracePeriodSeconds"] > 0
    assert _k8s_deployment("delivery-sockets")["spec"]["strategy"] == web["strategy"]
    assert _k8s_deployment("delivery-sockets")["spec"]["replicas"] >= 2


@pytest.mark.checklist("P8.7", configured=True)
def test_every_platform_waits_longer_than_each_role_needs_to_stop_cleanly():
    from config.celery import app

    assert app.conf.worker_soft_shutdown_timeout == WORKER_SOFT_SHUTDOWN_SECONDS
    compose = _compose()
    stop_times = {
        "web": [
            _seconds(compose["web"]["stop_grace_period"]),
            _railway("web")["drainingSeconds"],
            _ecs_container("web")["stopTimeout"],
            _k8s_deployment("delivery-web")["spec"]["template"]["spec"][
                "terminationGracePeriodSeconds"
            ],
        ]
    }
    stop_times["sockets"] = [
        _seconds(compose["sockets"]["stop_grace_period"]),
        _railway("sockets")["drainingSeconds"],
        _ecs_container("sockets")["stopTimeout"],
        _k8s_deployment("delivery-sockets")["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ],
    ]
    for name in WORKERS:
        stop_times[name] = [
            _seconds(compose[name]["stop_grace_period"]),
            _railway(name)["drainingSeconds"],
            _ecs_container(name)["stopTimeout"],
            _k8s_deployment(f"delivery-{name}")["spec"]["template"]["spec"][
                "terminationGracePeriodSeconds"
            ],
        ]
    # strictly longer: a platform that kills at the same moment cuts the clean stop short. A
    # worker needs its soft shutdown and then its pool's exit (27-30 s measured from the image,
    # core/tests/test_ecs.py): the platforms wait as long as the worker's own watchdog would
    # before it gives up (core.worker_liveness.HARD_EXIT_MARGIN_SECONDS).
    assert min(stop_times["web"]) > WEB_GRACEFUL_SECONDS, stop_times
    # the sockets: the drain, then gunicorn's last 15 s (35 s); at least 45 s everywhere,
    # and in Kubernetes after the preStop pause too
    sockets = _sockets_conf()
    assert sockets["graceful_timeout"] > sockets["drain_seconds"]
    assert min(stop_times["sockets"]) >= max(45, sockets["graceful_timeout"] + 10), stop_times
    pause = _k8s_container("delivery-sockets")["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    assert stop_times["sockets"][3] > int(pause[1]) + sockets["graceful_timeout"]
    for name in WORKERS:
        assert min(stop_times[name]) >= WORKER_SOFT_SHUTDOWN_SECONDS + HARD_EXIT_MARGIN_SECONDS


@pytest.mark.checklist("P6.14", configured=True)
def test_every_platform_checks_that_a_worker_consumes_and_restarts_one_that_ends():
    # the image's health check for a worker is the consuming probe, not a Celery ping
    healthcheck = (DEPLOY / "docker" / "healthcheck.sh").read_text()
    worker_branch = healthcheck.split("  worker)", 1)[1].split(";;", 1)[0]
    assert "manage.py worker_alive" in worker_branch and "inspect ping" not in worker_branch
    compose = _compose()
    for name in WORKERS:
        # ECS and Kubernetes run it and replace a failing container within a minute of it
        # failing; the probe fails a minute after a stall, the watchdog's own exit is sooner
        check = _ecs_container(name)["healthCheck"]
        assert check["command"] == ["CMD", "/app/deploy/docker/healthcheck.sh"], name
        assert check["interval"] * check["retries"] <= 60, name
        probe = _k8s_container(f"delivery-{name}")["livenessProbe"]
        assert probe["exec"]["command"] == ["/app/deploy/docker/healthcheck.sh"], name
        assert probe["periodSeconds"] * probe["failureThreshold"] <= 60, name
        # Compose keeps the image's check and, like Railway, restarts a worker that ended
        assert "healthcheck" not in compose[name], name
        assert compose[name]["restart"] == "unless-stopped", name
        assert _railway(name)["restartPolicyType"] == "ALWAYS", name


# --- Scheduled backups: the same command on every platform ------------------------------------

BACKUP_COMMAND = ["manage.py", "backup"]
_scheduler = botocore.session.get_session().get_service_model("scheduler")
SCHEDULES = sorted((DEPLOY / "ecs" / "schedules").glob("*.json"))


def _validate_scheduler(operation: str, params: dict) -> None:
    report = ParamValidator().validate(params, _scheduler.operation_model(operation).input_shape)
    if report.has_errors():
        raise ParamValidationError(report=report.generate_report())


def _backup_cronjob() -> dict:
    (cronjob,) = [r for r in _resources() if r["kind"] == "CronJob"]
    return cronjob


@pytest.mark.checklist("P12.2", configured=True)
def test_kubernetes_runs_manage_py_backup_nightly_never_two_at_once():
    cronjob = _backup_cronjob()
    assert cronjob["metadata"]["name"] == "delivery-backup"
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert len(spec["schedule"].split()) == 5
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    web_pod = _k8s_deployment("delivery-web")["spec"]["template"]["spec"]
    (web,) = web_pod["containers"]
    # the release's image, with web's settings and secrets, as the same non-root user
    assert container["args"] == BACKUP_COMMAND
    assert (container["image"], container["envFrom"]) == (web["image"], web["envFrom"])
    assert pod["securityContext"] == web_pod["securityContext"]
    assert container["securityContext"] == web["securityContext"]
    assert pod["restartPolicy"] == "Never"
    assert _env(container["env"])["BACKUP_TARGET"].startswith("s3://")
    # the dump is written under /tmp before its upload: room for it there
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # noqa: S108
    kubernetes_validate.validate(cronjob, K8S_VERSION, strict=True)
    # the schema has no enum for concurrencyPolicy (the assertion above checks the value); it
    # rejects a misspelled key, so a typo that would let two runs overlap cannot pass
    broken = copy.deepcopy(cronjob)
    broken["spec"]["concurrencyPolcy"] = broken["spec"].pop("concurrencyPolicy")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.checklist("P12.2", configured=True)
def test_ecs_runs_the_backup_task_on_an_eventbridge_schedule():
    assert [path.name for path in SCHEDULES] == ["backup.json"]
    schedule = json.loads(SCHEDULES[0].read_text())
    _validate_scheduler("CreateSchedule", schedule)
    # the backup task: web's image, settings and secrets, the backup command
    definition = json.loads((DEPLOY / "ecs" / "backup.json").read_text())
    backup, web = _ecs_container("backup"), _ecs_container("web")
    assert backup["command"] == BACKUP_COMMAND
    assert (backup["image"], backup["secrets"]) == (web["image"], web["secrets"])
    role_only = {"RUN_GUNICORN", "GUNICORN_WORKERS"}
    shared = {k: v for k, v in _env(web["environment"]).items() if k not in role_only}
    assert shared.items() <= _env(backup["environment"]).items()
    assert _env(backup["environment"])["BACKUP_TARGET"].startswith("s3://")
    # the schedule starts that task definition, in web's cluster and network, once a night
    target = schedule["Target"]
    ecs = target["EcsParameters"]
    assert ecs["TaskDefinitionArn"].endswith(f":task-definition/{definition['family']}")
    assert ecs["TaskCount"] == 1 and ecs["LaunchType"] == "FARGATE"
    service = _ecs_service("web")
    assert target["Arn"].endswith(f":cluster/{service['cluster']}")
    network = service["networkConfiguration"]["awsvpcConfiguration"]
    assert ecs["NetworkConfiguration"]["awsvpcConfiguration"] == {
        "Subnets": network["subnets"],
        "SecurityGroups": network["securityGroups"],
        "AssignPublicIp": network["assignPublicIp"],
    }
    assert re.fullmatch(r"cron\(\S+ \S+ \S+ \S+ \S+ \S+\)", schedule["ScheduleExpression"])
    assert schedule["State"] == "ENABLED"
    # and the validation rejects a misspelled schedule, so the pass means something
    broken = copy.deepcopy(schedule)
    broken["Target"]["EcsParameters"]["TaskDefinitonArn"] = ecs.pop("TaskDefinitionArn")
    with pytest.raises(ParamValidationError, match="TaskDefiniton"):
        _validate_scheduler("CreateSchedule", broken)


@pytest.mark.checklist("P12.2", configured=True)
def test_railway_runs_manage_py_backup_as_a_cron_service():
    backup = _railway("backup")
    assert backup["startCommand"] == "/usr/bin/tini -- /app/entrypoint.sh manage.py backup"
    # a cron service runs to its end: Railway starts it on the schedule, never restarts it
    assert len(backup["cronSchedule"].split()) == 5
    assert backup["restartPolicyType"] == "NEVER"
    assert backup["numReplicas"] == 1


def test_every_platform_backs_up_at_the_same_hour():
    k8s = _backup_cronjob()["spec"]
    ecs = json.loads(SCHEDULES[0].read_text())
    minute, hour = ecs["ScheduleExpression"].removeprefix("cron(").split()[:2]
    assert (
        k8s["schedule"].split()[:2]
        == [minute, hour]
        == _railway("backup")["cronSchedule"].split()[:2]
    )
    # Railway's cron is UTC; the others say so
    assert (k8s["timeZone"], ecs["ScheduleExpressionTimezone"]) == ("Etc/UTC", "Etc/UTC")
