"""The README's examples run as a user runs them, and the command outputs it quotes, regenerated.

    python -m tests.readme_outputs            # rewrite every quoted output in README.md from fresh runs
    python -m tests.readme_outputs --check    # say which quoted outputs differ (exit 1), change nothing

A quoted output is the fenced block after an `<!-- output: NAME -->` line; `generate` says which command prints
each. Commands run as the README writes them: `tierwise stand-in` on its default address, then the Replay
section's block line by line in an empty directory, with nothing changed but the environment variables the
README tells the user to set (the `export` lines the stand-in prints; the key the Replay block exports); the
MLflow section's retrain example and its pyfunc predictions in a new store. `tests/test_readme_outputs.py` and
`tests/test_retrain.py` fail when README.md's quoted outputs differ from what the commands print now.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from tierwise.classifier.outputs import atomic_file

from tests.helpers import gated_retrains

README = Path(__file__).resolve().parents[1] / "README.md"
QUOTED = re.compile(r"(<!-- output: ([\w-]+) -->\n```\n)(.*?)(```)", re.S)
EXPORT = re.compile(r"^export ((?:\w+=\S+ ?)+)")
REGENERATE = "python -m tests.readme_outputs"
TRAINING_OUTPUTS = ("retrain-gate", "pyfunc-predict")
MLFLOW = "MLflow: tracked runs, registered versions, gated retrain"


def section_blocks(title: str, text: str | None = None) -> list[tuple[str, str]]:
    """(language, code) of every fenced block in the README section with this title."""
    text = README.read_text() if text is None else text
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```(\w+)\n(.*?)```", text[start:end], re.S)


def commands(code: str) -> list[str]:
    """The commands of a bash block, one a line (continued lines joined), comments and blank lines left out."""
    return [line for line in code.replace("\\\n", " ").splitlines() if shlex.split(line, comments=True)]


def tierwise_argv(line: str) -> list[str]:
    """A `tierwise ...` line as the installed console script runs it (this interpreter's `-m tierwise`)."""
    words = shlex.split(line, comments=True)
    assert words[0] == "tierwise", line
    return [sys.executable, "-m", "tierwise", *words[1:]]


def exports(lines: list[str]) -> dict[str, str]:
    """The variables set by `export NAME=VALUE ...` lines."""
    found: dict[str, str] = {}
    for line in lines:
        match = EXPORT.match(line)
        if match:
            found.update(pair.split("=", 1) for pair in match.group(1).split())
    return found


def user_env(variables: dict[str, str]) -> dict[str, str]:
    """This environment with the user's variables set and the `tierwise` console script on PATH."""
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **variables}


@contextmanager
def stand_in() -> Iterator[tuple[list[str], dict[str, str]]]:
    """`tierwise stand-in` as "Try it offline" starts it; yields the lines it printed and the variables it exports.

    The README's addresses are fixed ports of this machine: whoever runs its examples (two pytest workers, this
    script) holds one machine-wide lock meanwhile, so two never bind them at once."""
    [line] = [line for _, code in section_blocks("Try it offline") for line in commands(code)]
    with (
        FileLock(Path(tempfile.gettempdir()) / "tierwise-readme-ports.lock"),
        subprocess.Popen(tierwise_argv(line), stdout=subprocess.PIPE, text=True) as process,
    ):
        try:
            assert process.stdout is not None
            printed = []
            while not printed or printed[-1] != "Ctrl-C stops it.":
                printed.append(process.stdout.readline().rstrip("\n"))
                if process.poll() is not None:
                    raise RuntimeError(f"tierwise stand-in exited ({process.returncode}): {printed}")
            yield printed, exports(printed)
        finally:
            process.terminate()
            process.wait(30)


def run_replay_block(workdir: Path, variables: dict[str, str]) -> dict[str, str]:
    """Run the Replay section's block line by line in `workdir`; returns each command line's standard output.

    An `export NAME=...` line stands for the user's own value: the one in `variables`.
    """
    [code] = [code for lang, code in section_blocks("Replay") if lang == "bash" and "tierwise replay" in code]
    env = user_env(variables)
    printed = {}
    for line in commands(code):
        if EXPORT.match(line):
            names = [pair.split("=", 1)[0] for pair in EXPORT.match(line).group(1).split()]
            env.update({name: variables[name] for name in names})
            continue
        done = subprocess.run(["bash", "-c", line], cwd=workdir, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"README Replay line failed ({done.returncode}): {line}\n{done.stderr}")
        printed[line] = done.stdout
    return printed


def _printed_by(printed: dict[str, str], start: str) -> str:
    [output] = [out for line, out in printed.items() if line.startswith(start)]
    return output


def _lines_from(text: str, first: str, count: int) -> str:
    lines = text.splitlines()
    at = next(index for index, line in enumerate(lines) if line.startswith(first))
    return "\n".join(lines[at : at + count]) + "\n"


def pyfunc_predictions(workdir: Path, tracking_uri: str, name: str) -> str:
    """What the MLflow section's pyfunc example prints, run in `workdir` against this store and registered model."""
    [code] = [code for lang, code in section_blocks(MLFLOW) if lang == "python" and "mlflow.pyfunc" in code]
    code = code.replace('"sqlite:///mlflow.db"', f'"{tracking_uri}"').replace("models:/router@", f"models:/{name}@")
    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=user_env({}), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"README pyfunc example failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def offline_outputs() -> dict[str, str]:
    """The outputs of `tierwise stand-in` and of the Replay section's block run against it (seconds)."""
    with stand_in() as (printed, variables), tempfile.TemporaryDirectory() as workdir:
        replay = run_replay_block(Path(workdir), variables)
    dry_run = _printed_by(replay, "tierwise replay logs/ --out replays.parquet --grader judge --dry-run")
    full_run = _printed_by(replay, "tierwise replay logs/ --out replays.parquet --grader judge --budget-usd")
    label = _printed_by(replay, "tierwise label logs/ replays.parquet")
    return {
        "stand-in": "\n".join(printed) + "\n",
        "replay-dry-run": dry_run,
        "replay-run": full_run,
        "replay-label": _lines_from(label, "status:", 4),
    }


def training_outputs() -> dict[str, str]:
    """The MLflow section's retrain decision and the pyfunc's predictions of the champion it leaves (a minute or
    two: three trainings; `tests/test_retrain.py` checks them on its own runs of the same retrains)."""
    with tempfile.TemporaryDirectory() as workdir:
        store = f"sqlite:///{workdir}/mlflow.db"
        rounds = gated_retrains(Path(workdir), "router", store)
        predictions = pyfunc_predictions(Path(workdir), store, "router")
    return dict(zip(TRAINING_OUTPUTS, (rounds["better"], predictions), strict=True))


def generate() -> dict[str, str]:
    """Every quoted output, as the commands print it now."""
    return {**offline_outputs(), **training_outputs()}


def quoted(text: str) -> dict[str, str]:
    """The README's quoted outputs by name."""
    return {match.group(2): match.group(3) for match in QUOTED.finditer(text)}


def differences(text: str, outputs: dict[str, str]) -> list[str]:
    """A unified diff per quoted output that differs from `outputs` (a name `outputs` lacks is one too)."""
    found = []
    for name, old in quoted(text).items():
        new = outputs.get(name)
        if new is None:
            found.append(f"{name}: no command regenerates it (add it to generate())")
        elif new != old:
            diff = difflib.unified_diff(old.splitlines(), new.splitlines(), "README.md", "now", lineterm="")
            found.append(f"{name}:\n" + "\n".join(diff))
    return found


def rewritten(text: str, outputs: dict[str, str]) -> str:
    """The README with every quoted output replaced by the one in `outputs`."""
    return QUOTED.sub(lambda m: m.group(1) + outputs.get(m.group(2), m.group(3)) + m.group(4), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report differences, change nothing")
    args = parser.parse_args()
    text = README.read_text()
    outputs = generate()
    found = differences(text, outputs)
    if args.check:
        print("\n\n".join(found) or "README.md's quoted outputs are current")
        sys.exit(1 if found else 0)
    with atomic_file(README) as tmp:
        tmp.write_text(rewritten(text, outputs))
    print(f"rewrote {len(found)} quoted output(s) in {README}" if found else "README.md's quoted outputs are current")


if __name__ == "__main__":
    main()
