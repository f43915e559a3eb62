"""The serving image without a container runtime: its Dockerfile read, and its build stage run here.

There is no Docker engine on these machines, so the build stage's COPY lines are applied to a scratch build
directory and its RUN lines run in a shell there, with the image's virtual environment path mapped to a local
folder and the stage's ENV applied. What comes out is the environment the image would ship: the tests check
it imports no training library, serves, and how big it is. The command lines the image and the deploy files
run are parsed by tierwise's own click commands, so a flag the CLI does not have fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import click

from tierwise.cli import main

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
IMAGE_VENV = "/opt/tierwise"  # where the image's build stage creates its virtual environment


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword, its arguments (continuations joined) and its first line."""

    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The arguments of an exec-form instruction (`["a", "b"]`)."""
        return json.loads(self.args)


@dataclass
class Stage:
    """A build stage: its base image and instructions."""

    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage FROM {self.base} has no {keyword}"
        return found[-1]


def read_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The Dockerfile's stages in order, each with its instructions (comments dropped, continuations joined)."""
    stages: list[Stage] = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        start = start if pending else number
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stages.append(Stage(base=args.split()[0]))
        else:
            stages[-1].instructions.append(Instruction(keyword.upper(), args.strip(), start))
    return stages


def env_pairs(instruction: Instruction) -> dict[str, str]:
    """The variables of an `ENV A=1 B=2` instruction."""
    return dict(pair.split("=", 1) for pair in shlex.split(instruction.args))


def image_command(stage: Stage) -> list[str]:
    """What a container of this stage runs by default: ENTRYPOINT followed by CMD."""
    return stage.last("ENTRYPOINT").exec_form() + stage.last("CMD").exec_form()


def install_lines(stage: Stage) -> list[str]:
    """The stage's RUN lines that install Python packages."""
    return [i.args for i in stage.all("RUN") if re.search(r"\bpip\b.*\binstall\b", i.args)]


@dataclass(frozen=True)
class BuiltEnv:
    """A virtual environment made by running an image's build stage here."""

    venv: Path
    build_log: str

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def console_script(self, name: str = "tierwise") -> Path:
        return self.venv / "bin" / name

    def size_mib(self) -> float:
        """Disk used by the environment, as `du` counts it, in MiB."""
        blocks = sum(p.lstat().st_blocks for p in self.venv.rglob("*"))
        return blocks * 512 / (1 << 20)

    def run(self, *command: str | Path, timeout_s: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Run a command with this environment's programs, outside the source tree and without PYTHONPATH, so
        only what the environment installed can be imported. It writes no bytecode: the environment is shared by
        the test workers and its size is measured as built."""
        return subprocess.run(
            [str(c) for c in command],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=clean_env(PYTHONDONTWRITEBYTECODE="1"),
            cwd=cwd or self.venv.parent,
        )


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without PYTHONPATH (which would let a child import the source tree)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, **extra}


def run_build_stage(stage: Stage, scratch: Path, timeout_s: float = 900) -> BuiltEnv:
    """Run a build stage's ENV, WORKDIR, COPY and RUN lines here; the virtual environment it makes.

    COPY sources are taken from the repository root (the image's build context); IMAGE_VENV is mapped to
    scratch/venv. Other instructions do not change what gets installed and are skipped.
    """
    context = scratch / "context"
    venv = scratch / "venv"
    workdir = context
    context.mkdir(parents=True)
    env = clean_env()
    log = []
    for instruction in stage.instructions:
        if instruction.keyword == "ENV":
            env.update(env_pairs(instruction))
        elif instruction.keyword == "WORKDIR":
            workdir = context / instruction.args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            *sources, target = shlex.split(instruction.args)
            for source in sources:
                _copy(ROOT / source, workdir / target, into=target.endswith("/") or len(sources) > 1)
        elif instruction.keyword == "RUN":
            command = instruction.args.replace(IMAGE_VENV, str(venv))
            done = subprocess.run(
                ["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout_s
            )
            log.append(f"$ {command}\n{done.stdout}{done.stderr}")
            assert done.returncode == 0, f"Dockerfile line {instruction.line} failed:\n{log[-1]}"
    return BuiltEnv(venv, "\n".join(log))


def _copy(source: Path, target: Path, into: bool) -> None:
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    else:
        destination = target / source.name if into else target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def parse_tierwise(argv: list[str]) -> click.Context:
    """Parse a `tierwise ...` command line with the CLI's own commands, without running it.

    Raises click's UsageError (unknown command or flag, bad value, missing required option) as the CLI would.
    """
    assert argv[0] == "tierwise", f"not a tierwise command line: {argv}"
    command: click.Command = main
    name, args = "tierwise", list(argv[1:])
    while isinstance(command, click.Group):
        name, *args = args
        found = command.get_command(click.Context(command), name)
        if found is None:
            raise click.UsageError(f"no such command {name!r} in {argv}")
        command = found
    return command.make_context(name, args)
