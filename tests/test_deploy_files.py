"""The container and cluster files in deploy/, checked without a container runtime or a cluster.

Dockerfiles go through hadolint, Kubernetes manifests through kubernetes-validate (strict: an unknown field
fails), and every command line the image, the manifests and the compose file run is parsed by tierwise's own
click commands (and `mlflow server`'s by MLflow's), so a flag that does not exist fails here. Ports, names and
paths that two files must agree on are checked against each other.
"""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.image_build import (
    DEPLOY,
    DOCKERFILE,
    IMAGE_VENV,
    env_pairs,
    image_command,
    install_lines,
    parse_tierwise,
    read_stages,
)

K8S_VERSION = "1.30.0"  # gRPC probes are stable since 1.27; validate against a version clusters still run
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
COMPOSE = DEPLOY / "compose.yaml"
PROMETHEUS = DEPLOY / "prometheus.yml"


def hadolint(path: Path) -> subprocess.CompletedProcess:
    """hadolint failing on every finding, style included."""
    command = ["hadolint", "--no-color", "--failure-threshold", "style", str(path)]
    return subprocess.run(command, capture_output=True, text=True)


def manifests() -> dict[str, dict]:
    """The Kubernetes objects in deploy/k8s, by kind."""
    return {doc["kind"]: doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc}


def runtime_stage():
    return read_stages()[-1]


def served_params(argv: list[str]) -> dict:
    """The options of a `tierwise serve` command line, as the CLI parses them."""
    context = parse_tierwise(argv)
    assert context.command.name == "serve", argv
    return context.params


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "mlflow-server.Dockerfile"])
def test_the_dockerfiles_pass_hadolint(dockerfile):
    done = hadolint(DEPLOY / dockerfile)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_fails_a_dockerfile_with_findings(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("python:3.11-slim-bookworm", "python:latest", 1))
    done = hadolint(bad)
    assert done.returncode == 1 and "DL3007" in done.stdout


def test_the_image_installs_the_project_without_extras():
    (line,) = install_lines(read_stages()[0])
    assert line == f"pip --python {IMAGE_VENV}/bin/python install ."
    copied = [i.args for i in runtime_stage().all("COPY") if i.args.startswith("--from=")]
    assert f"--from=build {IMAGE_VENV} {IMAGE_VENV}" in copied


@pytest.mark.slow_install
def test_the_image_install_yields_an_environment_without_torch(serving_image_env):
    done = serving_image_env.run(serving_image_env.python, "-c", "import torch")
    assert done.returncode == 1 and "No module named 'torch'" in done.stderr
    assert serving_image_env.run(serving_image_env.console_script(), "serve", "--help").returncode == 0


def test_the_image_runs_as_a_non_root_user():
    runtime = runtime_stage()
    user = runtime.last("USER").args
    assert user.isdigit() and int(user) != 0
    assert any(f"--uid {user}" in i.args for i in runtime.all("RUN"))


def test_the_image_command_serves_on_the_exposed_ports():
    params = served_params(image_command(runtime_stage()))
    exposed = {int(port) for i in runtime_stage().all("EXPOSE") for port in i.args.split()}
    assert params["host"] == "0.0.0.0"
    assert {params["port"], params["metrics_port"]} == exposed


def test_the_image_health_check_asks_grpc_health_on_the_served_port():
    runtime = runtime_stage()
    check = json.loads(runtime.last("HEALTHCHECK").args.split(" CMD ", 1)[1])
    probe_copies = {shlex.split(i.args)[-1]: shlex.split(i.args)[0] for i in runtime.all("COPY")}
    assert check[0] == "python" and probe_copies[check[1]] == "deploy/grpc_health_probe.py"
    target = check[check.index("--target") + 1]
    assert target == f"127.0.0.1:{served_params(image_command(runtime))['port']}"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_the_manifests_validate_strictly(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_an_unknown_probe_field():
    deployment = copy.deepcopy(manifests()["Deployment"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grcp"] = container["readinessProbe"].pop("grpc")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_the_deployment_serves_with_grpc_probes_and_the_tracking_uri_from_a_configmap():
    objects = manifests()
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    params = served_params(runtime_stage().last("ENTRYPOINT").exec_form() + container["args"])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": params["port"], "metrics": params["metrics_port"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": params["port"]}, probe
    config_map = next(source["configMapRef"]["name"] for source in container["envFrom"] if "configMapRef" in source)
    assert config_map == objects["ConfigMap"]["metadata"]["name"]
    assert objects["ConfigMap"]["data"]["MLFLOW_TRACKING_URI"].startswith("http")
    assert params["tracking_uri"] is None  # so the server reads $MLFLOW_TRACKING_URI


def test_the_pods_run_as_the_image_user_with_a_writable_cache():
    pod = manifests()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    runtime = runtime_stage()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == runtime.last("USER").args
    cache_dir = next(
        value for i in runtime.all("ENV") for name, value in env_pairs(i).items() if name == "TIERWISE_CACHE_DIR"
    )
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(cache_dir.startswith(mount) for mount in mounts) and "/tmp" in mounts


def test_the_service_and_autoscaler_point_at_the_deployment():
    objects = manifests()
    deployment, service, scaler = objects["Deployment"], objects["Service"], objects["HorizontalPodAutoscaler"]
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container_ports = {port["name"] for port in pod["spec"]["containers"][0]["ports"]}
    assert {port["targetPort"] for port in service["spec"]["ports"]} == container_ports
    assert scaler["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert pod["spec"]["containers"][0]["resources"]["requests"]["cpu"]  # CPU utilisation needs a request


def compose_services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def replicas() -> dict[str, dict]:
    """The compose services that run the serving image."""
    return {
        name: service
        for name, service in compose_services().items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def test_the_compose_replicas_run_valid_serve_commands_against_the_mlflow_server():
    services = compose_services()
    mlflow_port = _mlflow_server_params()["port"]
    assert len(replicas()) == 2
    for name, service in replicas().items():
        params = served_params(runtime_stage().last("ENTRYPOINT").exec_form() + service["command"])
        assert params["model"].startswith("models:/"), name
        assert service["environment"]["MLFLOW_TRACKING_URI"] == f"http://mlflow:{mlflow_port}"
        assert services["mlflow"]["healthcheck"] and "mlflow" in service["depends_on"]


def _mlflow_server_params() -> dict:
    """The `mlflow server` options of the compose file's MLflow service, as MLflow's own CLI parses them."""
    from mlflow.cli import cli

    program, command, *args = compose_services()["mlflow"]["command"]
    assert (program, command) == ("mlflow", "server")
    return cli.commands["server"].make_context("server", args).params


def test_the_compose_mlflow_server_keeps_runs_in_postgres_and_artifacts_in_minio():
    services = compose_services()
    params = _mlflow_server_params()
    assert params["backend_store_uri"].startswith("postgresql://") and "@postgres:" in params["backend_store_uri"]
    assert params["artifacts_destination"].startswith("s3://") and params["serve_artifacts"]
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "mlflow:5000" in params["allowed_hosts"].split(",")  # the replicas' Host header
    assert {"postgres", "minio-bucket"} <= set(services["mlflow"]["depends_on"])


def test_every_compose_dependency_is_a_service_and_ports_stay_on_loopback():
    services = compose_services()
    for name, service in services.items():
        assert set(service.get("depends_on", [])) <= set(services), name
        for published in service.get("ports", []):
            assert published.startswith("127.0.0.1:"), (name, published)


def test_prometheus_scrapes_every_replica_on_its_metrics_port():
    scraped = {
        target
        for job in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    expected = {
        f"{name}:{served_params(runtime_stage().last('ENTRYPOINT').exec_form() + service['command'])['metrics_port']}"
        for name, service in replicas().items()
    }
    assert scraped == expected
    assert compose_services()["prometheus"]["volumes"] == [f"./{PROMETHEUS.name}:/etc/prometheus/prometheus.yml:ro"]


def test_a_flag_the_cli_does_not_have_fails_the_check():
    import click

    with pytest.raises(click.NoSuchOption):
        parse_tierwise(["tierwise", "serve", "--model", "m", "--listen", "0.0.0.0"])
    with pytest.raises(click.BadParameter):
        parse_tierwise(["tierwise", "serve", "--model", "m", "--port", "70000"])
