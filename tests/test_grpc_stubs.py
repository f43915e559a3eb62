"""The committed gRPC stubs are exactly what serving.gen_protos makes from protos/, so they cannot drift."""

from __future__ import annotations

from pathlib import Path

from tierwise.serving import gen_protos


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path):
    written = gen_protos.write_stubs(tmp_path)
    assert {p.name for p in written} >= {"router_pb2.py", "router_pb2.pyi", "router_pb2_grpc.py"}
    for path in written:
        rel = path.relative_to(tmp_path)
        committed = gen_protos.STUB_ROOT / rel
        assert committed.exists(), f"{rel} is missing; run `python -m tierwise.serving.gen_protos`"
        assert committed.read_text() == path.read_text(), (
            f"{rel} differs from protos/; run `python -m tierwise.serving.gen_protos` and commit the result"
        )


def test_stubs_import_from_the_serving_package():
    from tierwise.serving.tierwise.v1 import router_pb2, router_pb2_grpc

    assert router_pb2.DESCRIPTOR.name == "tierwise/v1/router.proto"
    assert router_pb2_grpc.RouterStub.__module__ == "tierwise.serving.tierwise.v1.router_pb2_grpc"
    assert "from tierwise.serving.tierwise.v1 import router_pb2" in Path(router_pb2_grpc.__file__).read_text()
