"""README.md's quoted command outputs are what the commands print now: `tierwise stand-in` as "Try it offline"
starts it, and the Replay section's block run as written against it (the MLflow section's outputs are checked by
`tests/test_retrain.py` on its own retrains). When this fails, run `python -m tests.readme_outputs`, which rewrites
them, and review the diff."""

from __future__ import annotations

from tests.readme_outputs import (
    README,
    REGENERATE,
    TRAINING_OUTPUTS,
    differences,
    offline_outputs,
    quoted,
    rewritten,
)


def test_the_quoted_outputs_are_what_the_commands_print_now():
    text, now = README.read_text(), offline_outputs()
    assert set(quoted(text)) == {*now, *TRAINING_OUTPUTS}, "a quoted output lost its marker, or one has no command"
    found = differences(text, {**quoted(text), **now})  # the MLflow section's are tests/test_retrain.py's to check
    assert not found, f"README.md quotes outputs the commands no longer print: run `{REGENERATE}`\n\n" + "\n\n".join(
        found
    )


def test_regenerating_replaces_the_quoted_blocks_and_nothing_else():
    text = "intro\n<!-- output: a -->\n```\nold a\n```\nmiddle\n```\nnot quoted\n```\n<!-- output: b -->\n```\nb\n```\n"
    assert quoted(text) == {"a": "old a\n", "b": "b\n"}
    assert differences(text, {"a": "old a\n", "b": "b\n"}) == []
    [stale, unknown] = differences(text.replace("output: b", "output: c"), {"a": "new a\n", "b": "b\n"})
    assert stale.startswith("a:\n") and "-old a" in stale and "+new a" in stale and unknown.startswith("c: ")
    assert rewritten(text, {"a": "new a\n", "b": "b\n"}) == text.replace("old a", "new a")
