"""Installs split by job: the base install serves and predicts without torch or any training library, and the
training commands say in one line which extra they need.

The serving-only environment is the one the serving image ships (deploy/Dockerfile's build stage, run here
by `serving_image_env`): a fresh `python -m venv`, and `pip install` of the project without extras into it.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib

import grpc
import pytest
from tierwise.classifier.extras import Extra, MissingExtra
from tierwise.registry.models import Registry
from tierwise.serving.cli import ANTHROPIC
from tierwise.serving.process import ServerProcess
from tierwise.serving.tierwise.v1 import router_pb2 as pb
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc
from tierwise.training.extras import SPARK, TRAIN
from tierwise.training.tracking.promotion import register_trained

from tests.helpers import taken_port, train_files
from tests.image_build import DEPLOY, ROOT, BuiltEnv

SIZE_GOAL_MIB = 400
TRAINING_LIBRARIES = ("torch", "sklearn", "transformers", "sentence_transformers", "matplotlib", "polars")
PROBE = DEPLOY / "grpc_health_probe.py"
PROMPT = "Prove that there are infinitely many primes."


def serve_in(env: BuiltEnv, *args: str) -> ServerProcess:
    """`tierwise serve` from the environment's own console script, importing only what it installed."""
    program = ("env", "-u", "PYTHONPATH", str(env.console_script()), "serve")
    return ServerProcess(["--host", "127.0.0.1", "--port", "0", "--no-metrics", *args], program=program)


def predict_over_grpc(target: str) -> pb.PredictResponse:
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.RouterStub(channel).Predict(pb.PredictRequest(prompt=PROMPT), timeout=10)


@pytest.fixture(scope="module")
def registered(tmp_path_factory, sample_logs) -> tuple[str, str]:
    """A fresh SQLite store holding one registered version (champion) trained by the full install: (URI, version)."""
    work = tmp_path_factory.mktemp("slim-registry")
    store = f"sqlite:///{work / 'mlflow.db'}"
    result = train_files([sample_logs], work / "bundle")
    register_trained(result, Registry(store, create=True), "slim")
    return store, result.router.version


@pytest.mark.slow_install
def test_the_serving_install_has_no_training_library(serving_image_env):
    for module in TRAINING_LIBRARIES:
        done = serving_image_env.run(serving_image_env.python, "-c", f"import {module}")
        assert done.returncode == 1 and f"No module named '{module}'" in done.stderr, module
    assert serving_image_env.run(serving_image_env.python, "-c", "import mlflow, onnxruntime, grpc").returncode == 0


@pytest.mark.slow_install
def test_the_wheel_installs_one_top_level_name_and_runs_from_any_directory(serving_image_env, tmp_path):
    top_level = "import importlib.metadata as m; print(m.distribution('tierwise').read_text('top_level.txt'))"
    done = serving_image_env.run(serving_image_env.python, "-c", top_level)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["tierwise"]
    for cwd in (ROOT, tmp_path):  # the repository root holds folders named like the packages: they must not shadow
        done = serving_image_env.run(serving_image_env.console_script(), "--help", cwd=cwd)
        assert done.returncode == 0 and "Usage: tierwise" in done.stdout, done.stderr


@pytest.mark.slow_install
def test_the_serving_install_is_under_400_mib(serving_image_env):
    size = serving_image_env.size_mib()
    print(f"serving-only environment: {size:.0f} MiB")
    assert size < SIZE_GOAL_MIB


@pytest.mark.slow_install
def test_the_serving_install_serves_a_bundle_and_a_registered_model(serving_image_env, trained_bundle, registered):
    store, version = registered
    with serve_in(serving_image_env, "--model", str(trained_bundle)) as server:
        assert predict_over_grpc(server.target).tier in ("haiku", "sonnet", "opus")
        probe = serving_image_env.run(serving_image_env.python, PROBE, "--target", server.target)
        assert (probe.returncode, probe.stdout.strip()) == (0, f"{server.target}: SERVING")
    with serve_in(serving_image_env, "--model", "models:/slim@champion", "--tracking-uri", store) as server:
        assert predict_over_grpc(server.target).model_version == version
    assert server.proc.returncode == 0


@pytest.mark.slow_install
def test_the_serving_install_predicts_and_promotes_in_the_registry(serving_image_env, registered):
    store, version = registered
    tierwise = serving_image_env.console_script()
    done = serving_image_env.run(tierwise, "predict", "--model", "models:/slim/1", "--tracking-uri", store, PROMPT)
    assert done.returncode == 0, done.stderr
    assert f'"model_version": "{version}"' in done.stdout
    done = serving_image_env.run(tierwise, "promote", "slim", "1", "--tracking-uri", store)
    assert (done.returncode, done.stdout) == (0, "slim: champion is now version 1 (was 1)\n"), done.stderr


@pytest.mark.slow_install
@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["train", "logs/", "--out", "bundle/"], "train"),
        (["label", "logs/", "--out", "labels.parquet"], "label"),
        (["score", "logs/", "--model", "bundle/", "--out", "decisions.parquet"], "score"),
        (["demo"], "demo"),
    ],
)
def test_a_training_command_without_the_extra_names_it_in_one_line(serving_image_env, tmp_path, args, command):
    done = serving_image_env.run(serving_image_env.console_script(), *args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"Error: tierwise {command} needs the training extra: pip install '.[train]' from a clone\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow_install
def test_the_proxy_without_its_extra_names_it_in_one_line(serving_image_env, tmp_path):
    done = serving_image_env.run(serving_image_env.console_script(), "proxy", cwd=tmp_path)
    assert done.returncode == 2
    assert (
        done.stderr
        == "Error: tierwise proxy needs the Anthropic client and proxy extra: pip install '.[anthropic]' from a clone\n"
    )


def test_the_health_probe_fails_when_nothing_serves():
    with taken_port() as port:
        done = subprocess.run(
            [sys.executable, PROBE, "--target", f"127.0.0.1:{port}", "--timeout", "1"], capture_output=True, text=True
        )
    assert done.returncode == 1
    assert re.fullmatch(rf"127\.0\.0\.1:{port}: (UNAVAILABLE|DEADLINE_EXCEEDED)\n", done.stderr)


def extra_distributions(extra: str) -> set[str]:
    """The distributions pyproject.toml lists in an extra, by normalised name."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][extra]
    return {re.split(r"[\[<>=!~;\s]", requirement)[0].lower().replace("_", "-") for requirement in listed}


@pytest.mark.parametrize(
    ("extra", "unchecked"),
    [(TRAIN, {"mlflow"}), (SPARK, set()), (ANTHROPIC, {"uvloop"})],
)
def test_the_extra_guard_checks_exactly_the_extra_distributions(extra, unchecked):
    providers = importlib.metadata.packages_distributions()
    checked = {dist.lower().replace("_", "-") for module in extra.modules for dist in providers[module]}
    # The base install already has the `mlflow` module (from mlflow-skinny): the full distribution adds no module.
    # uvloop only speeds the proxy up (uvicorn uses it when present; it has no Windows build).
    assert checked == extra_distributions(extra.name) - unchecked


def test_a_missing_extra_names_the_command_and_the_install_line():
    extra = Extra("demo", "demonstration", ("json", "no_such_module_anywhere"))
    assert extra.missing() == ["no_such_module_anywhere"]
    with pytest.raises(MissingExtra) as raised:
        extra.require("tierwise show")
    assert str(raised.value) == "tierwise show needs the demonstration extra: pip install '.[demo]' from a clone"
    Extra("present", "present", ("json",)).require("tierwise show")


def test_every_package_folder_installs_under_tierwise():
    """pyproject.toml lists its packages by hand (package-dir maps root folders into `tierwise`): none may be missed."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {package: ROOT / folder for package, folder in setuptools["package-dir"].items()}
    found = {
        ".".join([package, *init.parent.relative_to(root).parts])
        for package, root in folders.items()
        for init in root.rglob("__init__.py")
        if package != "tierwise" or init.parent == root
    }
    assert set(setuptools["packages"]) == found


def test_the_readme_commands_are_the_set_up_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    main_job = "pip install torch==2.13.0 && pip install -e '.[train]' && tierwise demo"
    tests = "pip install torch==2.13.0 && pip install -e '.[train,spark,anthropic,dev]' && python -m pytest"
    assert f"```bash\n{main_job}\n```" in readme
    assert f"```bash\n{tests}\n```" in readme
    assert (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1] == tests
