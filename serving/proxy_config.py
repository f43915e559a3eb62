"""What `tierwise proxy` can be told, with every default in one place.

Kept free of the HTTP stack and grpc, so the command line can read the defaults without loading them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from tierwise.classifier.errors import InputError
from tierwise.classifier.request import DEFAULT_OPTIONS, RouteOptions
from tierwise.classifier.tiers import CACHE_LIFETIME_S
from tierwise.classifier.uris import masked
from tierwise.serving.config import ServeConfig

ANTHROPIC_API = "https://api.anthropic.com"


class ProxyError(InputError):
    """The proxy cannot start as asked (a bad address or URL, an unreadable token file)."""


@dataclass(frozen=True)
class ProxyConfig:
    """Everything `tierwise proxy` can be told; the command line's defaults are these.

    The router is `router` (over gRPC) or `local` (in this process: its metrics listen on `listen`'s host), never
    both; the router-only settings (timeout, down policy, TLS, token) are for `router`.
    """

    router: str | None = None  # a shared router (`tierwise serve`), host:port; or else `local`
    local: ServeConfig | None = None  # the router in this process (`--model`), as `tierwise serve` runs it
    listen: str = "127.0.0.1:8080"  # loopback only unless asked
    upstream: str = ANTHROPIC_API
    max_concurrency: int = 256  # requests in flight at once; one more is answered 529 overloaded_error
    max_body_bytes: int = 32 << 20  # the Messages API's own request limit
    router_timeout_s: float = 1.0  # deadline of each Predict; past it the router counts as down
    upstream_timeout_s: float = 600.0  # a long answer may take minutes
    router_down: Literal["fallback", "fail"] = "fallback"
    fallback_model: str | None = None  # None: the top tier's model
    ca_cert: str | Path | None = None  # TLS to the router, trusting this CA
    auth_token_file: str | Path | None = None  # bearer token for the router
    feedback_token_file: str | Path | None = None  # a token that may grade any routed request (feedback)
    routing: RouteOptions = DEFAULT_OPTIONS  # every routed request's, unless its x-tierwise-* headers say otherwise
    workloads: str | Path | None = None  # the policy per workload: between the headers and `routing`
    reload_interval: float = 2.0  # seconds between checks of the workloads file
    tiers: str | Path | None = None  # a ladder naming tiers' own provider, base_url, api_key_env; None: all --upstream
    session_ttl_s: float = CACHE_LIFETIME_S  # a conversation's warm tier is kept this long after a turn; 0: none

    def __post_init__(self) -> None:
        if (self.router is None) == (self.local is None):
            raise ProxyError(
                "give --model (a bundle or models:/NAME@ALIAS: the router in this process) or --router HOST:PORT "
                "(a shared `tierwise serve`), one of the two"
            )
        self.listen_address()
        url = urlsplit(self.upstream)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ProxyError(f"--upstream: {masked(self.upstream)!r} is not an http(s) URL")
        if not self.session_ttl_s >= 0:
            raise ProxyError(f"--session-ttl: {self.session_ttl_s} is not a number of seconds >= 0")
        if not self.upstream_timeout_s > 0:
            raise ProxyError(f"--upstream-timeout: {self.upstream_timeout_s} is not a positive number of seconds")

    def listen_address(self) -> tuple[str, int]:
        """`--listen` as (host, port); a bracketed IPv6 host loses its brackets."""
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ProxyError(f"--listen: {self.listen!r} is not HOST:PORT")
        return host.strip("[]"), int(port)
