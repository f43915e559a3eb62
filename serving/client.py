"""A small client for the tierwise gRPC service: channels with TLS and token, and a one-shot Predict of a
`RouteRequest`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
from google.protobuf import json_format
from tierwise.classifier.errors import InputError
from tierwise.classifier.request import RouteRequest
from tierwise.serving.auth import read_token
from tierwise.serving.tierwise.v1 import router_pb2_grpc as pb_grpc
from tierwise.serving.validation import wire_request


class CallFailed(InputError):
    """A call the server refused or could not answer, named by its gRPC status."""

    def __init__(self, error: grpc.RpcError):
        super().__init__(f"{error.code().name}: {error.details()}")
        self.code = error.code()


def open_channel(
    target: str,
    ca_cert: str | Path | None = None,
    token: str | None = None,
    options: Sequence[tuple[str, object]] = (),
) -> grpc.Channel:
    """A channel to the service; TLS when a CA certificate is given, a bearer token on every call when set."""
    if ca_cert is None:
        if token is not None:
            # A token over plaintext is the caller's choice (e.g. a local sidecar); gRPC only allows it this way.
            return grpc.intercept_channel(grpc.insecure_channel(target, options=options), _TokenHeader(token))
        return grpc.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=Path(ca_cert).read_bytes())
    if token is not None:
        credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(target, credentials, options=options)


class _TokenHeader(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to plaintext calls."""

    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return details._replace(metadata=[*(details.metadata or ()), self._header])

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_token(client_call_details), request)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_token(client_call_details), request_iterator)


def predict_once(
    target: str,
    request: RouteRequest,
    *,
    timeout_s: float = 5.0,
    ca_cert: str | Path | None = None,
    token_file: str | Path | None = None,
) -> dict[str, object]:
    """One Predict call for a routing request; the response as a JSON-ready dict with the proto's field names."""
    token = read_token(token_file) if token_file else None
    with open_channel(target, ca_cert, token) as channel:
        response = pb_grpc.RouterStub(channel).Predict(wire_request(request), timeout=timeout_s)
    return json_format.MessageToDict(
        response, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
