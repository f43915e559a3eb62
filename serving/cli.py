"""The serving side of the `tierwise` command line: `predict`, `serve`, `client`, `proxy` and `stand-in`.

Option defaults are `ServeConfig`'s own, so the command line and the library never disagree. The routing
options of a request are one decorator, `routing_options`, shared by `predict`, `client predict` and `proxy`
(its defaults); they become one `RouteOptions`, which checks them. The body of each command imports its
implementation, so `tierwise --help` never loads grpc.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import click
from tierwise.classifier.extras import Extra
from tierwise.classifier.limits import RECENT_DECISIONS_BYTES, FieldError
from tierwise.classifier.request import BANDS, DEFAULT_BAND, DEFAULT_MODE, MODES, RouteOptions, RouteRequest
from tierwise.registry.store import TRACKING_HELP
from tierwise.serving.config import ServeConfig
from tierwise.serving.proxy_config import ProxyConfig
from tierwise.serving.standin_defaults import STAND_IN_KEY, STAND_IN_PORT

DEFAULTS = ServeConfig(model="")
# RouteOptions field -> its flag, for the routing options every command spells the same way.
_ROUTING_FLAGS = {
    "quality_target": "--quality-target",
    "allowed_tiers": "--allowed-tier",
    "mode": "--mode",
    "latency_band": "--latency-band",
    "max_latency_ms": "--max-latency-ms",
    "value_of_time_usd_per_s": "--value-of-time-usd-per-s",
    "allow_explore": "--no-explore",
    "workload": "--workload",
}
WORKLOADS_HELP = (
    "A policy per workload: a TOML file of a [default] entry and [workload.NAME] entries (band, quality_target, "
    "allowed_tiers, max_latency_ms, value_of_time_usd_per_s, mode, explore_rate; README 'Workloads'). A request's "
    "workload entry (else [default]) fills in what the request leaves unset. Reloaded when it changes; a bad file is "
    "refused, naming the entry and field, and the old policy keeps serving."
)


def routing_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the routing options of a request to a command, handed to it as one checked `routing: RouteOptions`.

    A value RouteOptions refuses is a usage error naming the flag (exit 2).
    """

    @functools.wraps(command)
    def routed(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _ROUTING_FLAGS}
        try:
            kwargs["routing"] = RouteOptions(**values)
        except FieldError as exc:
            flag = _ROUTING_FLAGS.get(exc.field.partition("[")[0], exc.field)
            raise click.BadParameter(exc.problem, param_hint=f"'{flag}'") from None
        return command(*args, **kwargs)

    for option in reversed(
        (
            click.option("--quality-target", type=float, help="The quality threshold in [0, 1]. Default: the model's."),
            click.option(
                _ROUTING_FLAGS["allowed_tiers"],
                "allowed_tiers",
                multiple=True,
                help="Restrict to this tier (repeatable).",
            ),
            click.option("--mode", type=click.Choice(MODES), help=f"Default: the workload's, else {DEFAULT_MODE}."),
            click.option(
                "--latency-band",
                type=click.Choice(BANDS, case_sensitive=False),
                help="interactive: a person waits (--max-latency-ms); tolerant: waiting has a price "
                "(--value-of-time-usd-per-s); async: Batch API prices, time ignored. Default: the workload's, "
                f"else {DEFAULT_BAND}.",
            ),
            click.option(
                "--max-latency-ms",
                type=float,
                help="interactive: the answer must be acceptable within this many ms (models with a time model). "
                "Default: the server's (`serve --max-latency-ms`), else none.",
            ),
            click.option(
                "--value-of-time-usd-per-s",
                type=float,
                help="tolerant: what a second of waiting is worth in USD, traded against cost (models with a time "
                "model). Default: the server's, else time is not priced.",
            ),
            click.option(
                _ROUTING_FLAGS["allow_explore"],
                "allow_explore",
                flag_value=False,
                default=True,
                help="Opt out of exploration (`serve --explore-rate`): always the policy's choice.",
            ),
            click.option(
                _ROUTING_FLAGS["workload"],
                help="The workload the request belongs to (a name of your choosing, written in the decision log; "
                "with `--workloads`, its entry fills in the options left unset).",
            ),
        )
    ):
        routed = option(routed)
    return routed


# The options of the router a process runs itself (`serve`, `proxy --model`), by parameter name -> flag: its model,
# reload, input limit, logs, exploration, memory, calibration and metrics.
_SERVED_MODEL_FLAGS = {
    "model": "--model",
    "tracking_uri": "--tracking-uri",
    "metrics_port": "--metrics-port",
    "no_metrics": "--no-metrics",
    "reload_interval": "--reload-interval",
    "max_prompt_bytes": "--max-prompt-bytes",
    "decision_log": "--decision-log",
    "redact_prompts": "--redact-prompts",
    "outcome_log": "--outcome-log",
    "explore_rate": "--explore-rate",
    "explore_seed": "--explore-seed",
    "recent_decisions": "--recent-decisions",
    "calibration_window": "--calibration-window",
}


def served_model_options(model_help: str, required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the options of a router this process runs (`_SERVED_MODEL_FLAGS`) to a command: one list, so `serve` and
    `proxy --model` spell, explain and default them alike (`ServeConfig`'s defaults)."""
    options = (
        click.option("--model", required=required, help=model_help),
        click.option("--tracking-uri", help=TRACKING_HELP),
        click.option(
            "--metrics-port",
            default=DEFAULTS.metrics_port,
            show_default=True,
            type=click.IntRange(0, 65535),
            help="Prometheus /metrics port, on the address this command listens on (open without a token); 0 = any.",
        ),
        click.option("--no-metrics", is_flag=True, help="Do not expose Prometheus metrics over HTTP."),
        click.option(
            "--reload-interval",
            default=DEFAULTS.reload_interval,
            show_default=True,
            type=click.FloatRange(min=0),
            help="Seconds between checks of the model source; 0: SIGHUP only.",
        ),
        click.option(
            "--max-prompt-bytes",
            default=DEFAULTS.max_prompt_bytes,
            show_default=True,
            type=click.IntRange(min=1),
            help="Longer prompts are refused naming the field, INVALID_ARGUMENT (gRPC) or 400 (the proxy); serve's "
            "transport takes messages up to max(64 MiB, 4x this + 1 MiB).",
        ),
        click.option(
            "--decision-log",
            type=click.Path(dir_okay=False),
            help="Append every decision (prompt, tier, chain, probabilities, propensity) to this JSONL file; SIGHUP "
            "reopens it (log rotation). `tierwise collect` joins it with --outcome-log into attempt logs.",
        ),
        click.option(
            "--redact-prompts",
            is_flag=True,
            help="Keep only each prompt's SHA-256 in the decision log; `tierwise collect --prompts` brings them back.",
        ),
        click.option(
            "--outcome-log",
            type=click.Path(dir_okay=False),
            help="Append every reported outcome (ReportOutcome/ReportOutcomes, the proxy's attempts and grades) to "
            "this JSONL file; SIGHUP reopens it.",
        ),
        click.option(
            "--explore-rate",
            default=DEFAULTS.explore_rate,
            show_default=True,
            type=click.FloatRange(0, 1),
            help="Share of requests with a cheaper allowed tier that are served one, drawn uniformly, with the chosen "
            "tier next in the chain; responses say `explored` and the choice's `propensity`. A --workloads entry's "
            "explore_rate replaces it for that workload.",
        ),
        click.option(
            "--explore-seed",
            type=int,
            help="Seed the exploration draws (each worker adds its number), for reproducible experiments; leave unset "
            "in production.",
        ),
        click.option(
            "--recent-decisions",
            default=DEFAULTS.recent_decisions,
            show_default=True,
            type=click.IntRange(min=1),
            help=f"Routed request_ids remembered (about 0.4 KB each, {RECENT_DECISIONS_BYTES >> 20} MiB at most in "
            "all, the oldest forgotten first): an outcome for one not remembered is kept and flagged "
            "known_request=false.",
        ),
        click.option(
            "--calibration-window",
            default=DEFAULTS.calibration_window,
            show_default=True,
            type=click.IntRange(min=1),
            help="Graded outcomes per tier behind the live calibration (metrics and GetModelInfo).",
        ),
    )

    def add(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return add


@click.group()
def commands() -> None:
    """The serving commands (assembled into `tierwise` by `tierwise.cli`)."""


@commands.command("predict")
@click.argument("text")
@click.option("--model", required=True, help="Bundle directory, or a registered version models:/NAME@ALIAS (or /V).")
@routing_options
@click.option("--workloads", type=click.Path(exists=True, dir_okay=False), help="As `serve --workloads`.")
@click.option("--tracking-uri", help=TRACKING_HELP)
def predict(text: str, model: str, routing: RouteOptions, workloads: str | None, tracking_uri: str | None) -> None:
    """Print the routing decision for TEXT as JSON: tier, model, per-tier probabilities, fallback chain, expected
    cost and time to an acceptable answer, the latency band and workload it was decided in.

    Decided as `tierwise serve` with its default settings (and the same --workloads) decides a Predict request (no
    band defaults, no exploration), by the same code.
    """
    from tierwise.classifier.decider import Decider
    from tierwise.classifier.router import Router
    from tierwise.classifier.workloads import Workloads
    from tierwise.registry.sources import open_model_source

    policy = Workloads.load(workloads) if workloads else None
    router = Router.load(open_model_source(model, tracking_uri).resolve().path)
    if policy is not None:
        policy.check_tiers(router.ladder.names)
    decision = Decider(workloads=policy).decide(router, RouteRequest(text, options=routing))
    answer = {
        **dataclasses.asdict(decision.prediction),
        "model_version": decision.model_version,
        "latency_band": decision.options.band,
        "workload": decision.options.workload,
    }
    click.echo(json.dumps(answer, indent=2))


@commands.command("serve")
@served_model_options(
    "Bundle directory, or models:/NAME@ALIAS from the MLflow registry; reloaded when it changes (files, or the alias "
    "moving; polled every --reload-interval) or on SIGHUP.",
    required=True,
)
@click.option(
    "--host",
    default=DEFAULTS.host,
    show_default=True,
    help="Address to listen on, for gRPC and metrics alike: loopback only by default; 0.0.0.0 for every "
    "interface (then use TLS and a token: without them the server warns once).",
)
@click.option(
    "--port", default=DEFAULTS.port, show_default=True, type=click.IntRange(0, 65535), help="gRPC port; 0 = any."
)
@click.option(
    "--server-mode",
    type=click.Choice(["sync", "aio"]),
    help="grpcio server kind. Default: the fastest measured (docs/benchmarks.md): aio for one process, sync "
    "(a thread pool) with --workers.",
)
@click.option(
    "--threads",
    default=DEFAULTS.threads,
    show_default=True,
    type=click.IntRange(min=1),
    help="Threads of the sync server for unary calls and health (streams have their own, --max-streams).",
)
@click.option(
    "--max-streams",
    default=DEFAULTS.max_streams,
    show_default=True,
    type=click.IntRange(min=1),
    help="Sync server: open PredictStreams at once, each holding a thread of its own (so idle streams never "
    "starve unary calls or health); one more is refused with RESOURCE_EXHAUSTED. The aio server has no limit.",
)
@click.option(
    "--workers",
    default=DEFAULTS.workers,
    show_default=True,
    type=click.IntRange(min=1),
    help="Server processes sharing the port (SO_REUSEPORT), each with its own copy of the model: one per CPU "
    "core for throughput (a process runs its handlers under one GIL). Metrics gain a `worker` label.",
)
@click.option(
    "--max-batch", default=DEFAULTS.max_batch, show_default=True, type=click.IntRange(min=1), help="PredictBatch items."
)
@click.option(
    "--grace",
    default=DEFAULTS.grace,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to drain in-flight calls on SIGTERM; then running batches stop at their next chunk.",
)
@click.option(
    "--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate chain (with --tls-key)."
)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key (with --tls-cert).")
@click.option(
    "--auth-token-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Require `authorization: Bearer <token>` with this token on every call but health.",
)
@click.option(
    "--max-latency-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULTS.max_latency_ms,
    help="INTERACTIVE requests that set no max_latency_ms get this budget (models with a time model only). "
    "Default: none, no budget.",
)
@click.option(
    "--value-of-time-usd-per-s",
    type=click.FloatRange(min=0),
    default=DEFAULTS.value_of_time_usd_per_s,
    help="TOLERANT requests that set no value_of_time_usd_per_s get this one (models with a time model only). "
    "Default: none, time not priced.",
)
@click.option("--workloads", type=click.Path(exists=True, dir_okay=False), help=WORKLOADS_HELP)
def serve(no_metrics: bool, metrics_port: int, **options: Any) -> None:
    """Serve a router bundle over gRPC (tierwise.v1.Router, health, reflection) until SIGTERM.

    A new bundle (SIGHUP, or its files change) is verified before it replaces the serving one; a bundle
    that fails is refused and the old one keeps serving. SIGHUP also reopens the decision and outcome logs. SIGTERM
    drains in-flight calls, then exits 0. With --workers N this process supervises N server processes
    sharing the port.
    """
    config = ServeConfig(metrics_port=None if no_metrics else metrics_port, **options)
    if config.workers > 1:
        from tierwise.serving.workers import serve_workers

        serve_workers(config)
    else:
        from tierwise.serving.server import serve as serve_one

        serve_one(config)


@commands.group("client")
def client() -> None:
    """Talk to a running `tierwise serve`."""


@client.command("predict")
@click.argument("text")
@click.option("--target", default="localhost:50051", show_default=True, help="host:port of the server.")
@routing_options
@click.option("--request-id", default="", help="Echoed back and written to the server's decision log.")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(min=0), help="Deadline in seconds.")
@click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False), help="Use TLS, trusting this PEM CA.")
@click.option("--auth-token-file", type=click.Path(exists=True, dir_okay=False), help="Send this bearer token.")
def client_predict(
    text: str,
    target: str,
    routing: RouteOptions,
    request_id: str,
    timeout: float,
    ca_cert: str | None,
    auth_token_file: str | None,
) -> None:
    """Ask the server which tier TEXT needs; prints the response as JSON."""
    import grpc
    from tierwise.serving.client import CallFailed, predict_once

    request = RouteRequest(text, options=routing, request_id=request_id)
    try:
        response = predict_once(target, request, timeout_s=timeout, ca_cert=ca_cert, token_file=auth_token_file)
    except grpc.RpcError as exc:
        raise CallFailed(exc) from exc
    click.echo(json.dumps(response, indent=2))


# ProxyConfig's defaults (a ProxyConfig itself needs its router named).
PROXY_DEFAULTS = SimpleNamespace(**{field.name: field.default for field in dataclasses.fields(ProxyConfig)})
# The options only a router over gRPC takes (`proxy --router`), by parameter name -> flag.
_ROUTER_FLAGS = {
    "router_timeout_s": "--router-timeout",
    "router_down": "--router-down",
    "ca_cert": "--ca-cert",
    "auth_token_file": "--auth-token-file",
}
ANTHROPIC = Extra(
    "anthropic", "Anthropic client and proxy", ("anthropic", "starlette", "uvicorn", "httpx", "httptools")
)


@commands.command("proxy")
@served_model_options(
    "Route in this process (no `tierwise serve`): a bundle directory, or models:/NAME@ALIAS, followed and reloaded "
    "as `tierwise serve --model` does (SIGHUP too). One of --model and --router.",
    required=False,
)
@click.option("--router", help="HOST:PORT of a shared `tierwise serve` to ask instead. One of --model and --router.")
@click.option(
    "--listen",
    default=PROXY_DEFAULTS.listen,
    show_default=True,
    help="HOST:PORT to serve the Messages API on (port 0: any); loopback only unless asked.",
)
@click.option(
    "--upstream",
    default=PROXY_DEFAULTS.upstream,
    show_default=True,
    envvar="TIERWISE_UPSTREAM",
    help="The Anthropic API to forward to ($TIERWISE_UPSTREAM if set).",
)
@click.option(
    "--max-concurrency",
    default=PROXY_DEFAULTS.max_concurrency,
    show_default=True,
    type=click.IntRange(min=1),
    help="Requests in flight at once (a stream counts until it ends); one more gets 529 overloaded_error.",
)
@click.option(
    "--max-body-bytes",
    default=PROXY_DEFAULTS.max_body_bytes,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest request body taken; a bigger one gets 413 request_too_large.",
)
@click.option(
    "--router-timeout",
    "router_timeout_s",
    default=PROXY_DEFAULTS.router_timeout_s,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for a routing decision; past it the router counts as down.",
)
@click.option(
    "--upstream-timeout",
    "upstream_timeout_s",
    default=PROXY_DEFAULTS.upstream_timeout_s,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds an upstream call may take (a long answer takes minutes); past it the attempt fails with "
    "api_timeout_error and the next tier is tried.",
)
@click.option(
    "--router-down",
    type=click.Choice(["fallback", "fail"]),
    default=PROXY_DEFAULTS.router_down,
    show_default=True,
    help="When no router answers: call --fallback-model (flagged in x-tierwise-router-error), or answer 503.",
)
@click.option("--fallback-model", help="The model used while the router is down. Default: the top tier's.")
@click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False), help="TLS to the router, trusting this CA.")
@click.option("--auth-token-file", type=click.Path(exists=True, dir_okay=False), help="Bearer token for the router.")
@click.option(
    "--feedback-token-file",
    type=click.Path(exists=True, dir_okay=False),
    envvar="TIERWISE_FEEDBACK_TOKEN_FILE",
    help="A token (the file's content) that may grade any routed request at /v1/tierwise/feedback, sent as "
    "x-api-key or `authorization: Bearer`; without it only the API key that made a request may grade it "
    "($TIERWISE_FEEDBACK_TOKEN_FILE if set).",
)
@click.option(
    "--workloads",
    type=click.Path(exists=True, dir_okay=False),
    help=WORKLOADS_HELP + " Its entries' fields go to the router as the request's; explore_rate is the router's: "
    "with --model, this file's (the router runs here), with --router, the shared router's own file's.",
)
@click.option(
    "--tiers",
    type=click.Path(exists=True, dir_okay=False),
    help="A tier ladder TOML whose tiers may name their own provider (anthropic | openai), base_url and api_key_env "
    "(the environment variable holding the key); a tier without them goes to --upstream with the caller's key. "
    "Default: the served model's ladder (a bundle trained with --tiers carries them).",
)
@click.option(
    "--session-ttl",
    "session_ttl_s",
    default=PROXY_DEFAULTS.session_ttl_s,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds a conversation's warm tier is remembered after its turn (the providers' prompt-cache lifetime): "
    "its next turn stays on the tier whose cache holds its prefix when that tier is as likely to answer "
    "acceptably and costs no more with the prefix at the cache-read price. A conversation is x-tierwise-session, "
    "else the user (metadata.user_id, OpenAI's user) with the first messages. 0: each turn routed on its own.",
)
@routing_options
def proxy(**options: Any) -> None:
    """Serve the Anthropic Messages API, routing `"model": "tierwise"` requests through the router.

    The router runs inside the proxy (--model, with serve's decision and outcome logs, exploration and metrics) or
    is a shared `tierwise serve` (--router). Point any Anthropic client's base_url at --listen. Other models,
    count_tokens and every other /v1 path pass through to --upstream untouched. A routed request's options, field
    by field: its `x-tierwise-*` headers, else its workload's --workloads entry (x-tierwise-workload, else
    --workload), else the routing options below. SIGTERM or SIGINT stops it.
    """
    ANTHROPIC.require(click.get_current_context().command_path)
    served = {name: options.pop(name) for name in _SERVED_MODEL_FLAGS}
    local = served["model"] is not None
    if local == (options["router"] is not None):
        raise click.UsageError("give --model (the router in this process) or --router HOST:PORT, one of the two")
    misplaced = _given(_ROUTER_FLAGS if local else {k: v for k, v in _SERVED_MODEL_FLAGS.items() if k != "model"})
    if misplaced:
        raise click.UsageError(f"{', '.join(misplaced)}: only with {'--router' if local else '--model'}")
    from tierwise.serving.proxy import serve_proxy

    if local:
        no_metrics, metrics_port = served.pop("no_metrics"), served.pop("metrics_port")
        metrics = None if no_metrics else metrics_port
        options["local"] = ServeConfig(**served, metrics_port=metrics, workloads=options["workloads"])
    serve_proxy(ProxyConfig(**options))


@commands.command("stand-in")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=STAND_IN_PORT, show_default=True, type=click.IntRange(0, 65535), help="Port; 0 = any.")
@click.option("--api-key", default=STAND_IN_KEY, show_default=True, help="The one key it accepts.")
def stand_in(host: str, port: int, api_key: str) -> None:
    """Run a local stand-in for the Anthropic and OpenAI APIs, to try tierwise offline.

    It answers Anthropic Messages (streamed or not), Message Batches and count_tokens for any claude-* model, and
    OpenAI Chat Completions for any model, with deterministic answers and prompt-caching usage; it prints the key
    and the base URLs to export. Ctrl-C stops it.
    """
    from tierwise.serving.standin import serve_stand_in

    serve_stand_in(host, port, api_key, click.echo)


def _given(flags: dict[str, str]) -> list[str]:
    """The flags of these parameters the command line (or the environment) set, not left at their defaults."""
    context = click.get_current_context()
    return [flag for name, flag in flags.items() if context.get_parameter_source(name) not in _UNSET]


_UNSET = (None, click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP)
