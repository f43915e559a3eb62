"""The recent-decision memory: the last N routed requests' probabilities by request_id, the oldest forgotten
first, and nothing in it for the garbage collector to walk."""

from __future__ import annotations

import gc

from tierwise.serving.recent import RecentDecisions


def probs(p: float) -> dict[str, float]:
    return {"haiku": p, "opus": 0.9}


def test_keeps_the_last_n_decisions_and_forgets_the_oldest():
    memory = RecentDecisions(3)
    for i in range(5):
        memory.remember(f"r{i}", probs(i / 10))
    assert [memory.get(f"r{i}") for i in range(5)] == [None, None, probs(0.2), probs(0.3), probs(0.4)]
    assert len(memory) == 3


def test_a_reused_request_id_answers_with_its_latest_decision_until_that_one_is_forgotten():
    memory = RecentDecisions(2)
    memory.remember("same", probs(0.1))
    memory.remember("same", probs(0.2))
    memory.remember("other", probs(0.3))  # takes the first slot of "same": its later routing keeps it
    assert memory.get("same") == probs(0.2)
    memory.remember("third", probs(0.4))  # takes the slot of the later routing
    assert memory.get("same") is None


def test_remembering_creates_nothing_the_garbage_collector_tracks():
    memory = RecentDecisions(1000)
    gc.collect()
    before = len(gc.get_objects())
    for i in range(1000):
        memory.remember(f"r{i}", {"haiku": 0.5, "opus": 0.9})
    assert len(gc.get_objects()) - before < 10
