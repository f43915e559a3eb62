"""One claimant process of the concurrent champion claims (tests/test_fault_store.py), in a module of its own so
that each spawned process imports the registry alone, not the test module's training stack."""

from __future__ import annotations

from tierwise.registry.models import Registry


def claim_at_once(uri: str, name: str, version: str, barrier, answers) -> None:
    """Open the store, wait for the other claimants, then claim champion for this version."""
    registry = Registry(uri, create=True)
    registry.client.get_registered_model(name)
    barrier.wait(timeout=120)
    answers.put((version, registry.claim(name, version)))
