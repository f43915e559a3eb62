"""The recent-decision memory: the last N decisions by request_id, the oldest forgotten first."""

from __future__ import annotations

from dataclasses import dataclass

from serving.recent import RecentDecisions


@dataclass
class Entry:
    request_id: str


def test_keeps_the_last_n_decisions_and_forgets_the_oldest():
    memory: RecentDecisions[Entry] = RecentDecisions(3)
    entries = [Entry(f"r{i}") for i in range(5)]
    for entry in entries:
        memory.remember(entry)
    assert [memory.get(e.request_id) for e in entries] == [None, None, *entries[2:]]
    assert len(memory) == 3


def test_a_reused_request_id_answers_with_its_latest_decision_until_that_one_is_forgotten():
    memory: RecentDecisions[Entry] = RecentDecisions(2)
    first, again, other = Entry("same"), Entry("same"), Entry("other")
    memory.remember(first)
    memory.remember(again)
    memory.remember(other)  # overwrites `first`'s slot: `again` stays
    assert memory.get("same") is again
    memory.remember(Entry("third"))  # overwrites `again`'s slot
    assert memory.get("same") is None
