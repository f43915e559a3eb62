from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LatencyBand(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LATENCY_BAND_UNSPECIFIED: _ClassVar[LatencyBand]
    INTERACTIVE: _ClassVar[LatencyBand]
    TOLERANT: _ClassVar[LatencyBand]
    ASYNC: _ClassVar[LatencyBand]

class RoutingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTING_MODE_UNSPECIFIED: _ClassVar[RoutingMode]
    THRESHOLD: _ClassVar[RoutingMode]
    COST: _ClassVar[RoutingMode]
LATENCY_BAND_UNSPECIFIED: LatencyBand
INTERACTIVE: LatencyBand
TOLERANT: LatencyBand
ASYNC: LatencyBand
ROUTING_MODE_UNSPECIFIED: RoutingMode
THRESHOLD: RoutingMode
COST: RoutingMode

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("prompt", "messages", "request_id", "quality_target", "allowed_tiers", "latency_band", "mode", "allow_explore", "max_latency_ms", "value_of_time_usd_per_s", "workload", "conversation")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUALITY_TARGET_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_TIERS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BAND_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_EXPLORE_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    VALUE_OF_TIME_USD_PER_S_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    request_id: str
    quality_target: float
    allowed_tiers: _containers.RepeatedScalarFieldContainer[str]
    latency_band: LatencyBand
    mode: RoutingMode
    allow_explore: bool
    max_latency_ms: float
    value_of_time_usd_per_s: float
    workload: str
    conversation: Conversation
    def __init__(self, prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., request_id: _Optional[str] = ..., quality_target: _Optional[float] = ..., allowed_tiers: _Optional[_Iterable[str]] = ..., latency_band: _Optional[_Union[LatencyBand, str]] = ..., mode: _Optional[_Union[RoutingMode, str]] = ..., allow_explore: _Optional[bool] = ..., max_latency_ms: _Optional[float] = ..., value_of_time_usd_per_s: _Optional[float] = ..., workload: _Optional[str] = ..., conversation: _Optional[_Union[Conversation, _Mapping]] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("warm_tier", "cached_tokens", "output_tokens")
    WARM_TIER_FIELD_NUMBER: _ClassVar[int]
    CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    warm_tier: str
    cached_tokens: int
    output_tokens: int
    def __init__(self, warm_tier: _Optional[str] = ..., cached_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("request_id", "tier", "model", "probabilities", "fallback_chain", "model_version", "inference_us", "quality_target", "mode", "expected_cost_usd", "use_batch_api", "explored", "propensity", "expected_latency_ms", "latency_budget_met", "kept_warm")
    class ProbabilitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_CHAIN_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_US_FIELD_NUMBER: _ClassVar[int]
    QUALITY_TARGET_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    USE_BATCH_API_FIELD_NUMBER: _ClassVar[int]
    EXPLORED_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BUDGET_MET_FIELD_NUMBER: _ClassVar[int]
    KEPT_WARM_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    tier: str
    model: str
    probabilities: _containers.ScalarMap[str, float]
    fallback_chain: _containers.RepeatedScalarFieldContainer[str]
    model_version: str
    inference_us: int
    quality_target: float
    mode: RoutingMode
    expected_cost_usd: float
    use_batch_api: bool
    explored: bool
    propensity: float
    expected_latency_ms: float
    latency_budget_met: bool
    kept_warm: bool
    def __init__(self, request_id: _Optional[str] = ..., tier: _Optional[str] = ..., model: _Optional[str] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., fallback_chain: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ..., inference_us: _Optional[int] = ..., quality_target: _Optional[float] = ..., mode: _Optional[_Union[RoutingMode, str]] = ..., expected_cost_usd: _Optional[float] = ..., use_batch_api: _Optional[bool] = ..., explored: _Optional[bool] = ..., propensity: _Optional[float] = ..., expected_latency_ms: _Optional[float] = ..., latency_budget_met: _Optional[bool] = ..., kept_warm: _Optional[bool] = ...) -> None: ...

class PredictBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[PredictRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[PredictRequest, _Mapping]]] = ...) -> None: ...

class PredictBatchResponse(_message.Message):
    __slots__ = ("responses", "model_version", "inference_us")
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_US_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[PredictResponse]
    model_version: str
    inference_us: int
    def __init__(self, responses: _Optional[_Iterable[_Union[PredictResponse, _Mapping]]] = ..., model_version: _Optional[str] = ..., inference_us: _Optional[int] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TierInfo(_message.Message):
    __slots__ = ("name", "model", "models", "input_usd_per_mtok", "output_usd_per_mtok", "time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    INPUT_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    models: _containers.RepeatedScalarFieldContainer[str]
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    time: TierTime
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., input_usd_per_mtok: _Optional[float] = ..., output_usd_per_mtok: _Optional[float] = ..., time: _Optional[_Union[TierTime, _Mapping]] = ...) -> None: ...

class TierTime(_message.Message):
    __slots__ = ("first_token_ms", "output_tokens_per_s", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "source")
    FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_P50_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_P90_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_P99_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    first_token_ms: float
    output_tokens_per_s: float
    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p99: float
    source: str
    def __init__(self, first_token_ms: _Optional[float] = ..., output_tokens_per_s: _Optional[float] = ..., latency_ms_p50: _Optional[float] = ..., latency_ms_p90: _Optional[float] = ..., latency_ms_p99: _Optional[float] = ..., source: _Optional[str] = ...) -> None: ...

class LiveCalibration(_message.Message):
    __slots__ = ("tier", "outcomes", "realized_success", "predicted_success")
    TIER_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    REALIZED_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    tier: str
    outcomes: int
    realized_success: float
    predicted_success: float
    def __init__(self, tier: _Optional[str] = ..., outcomes: _Optional[int] = ..., realized_success: _Optional[float] = ..., predicted_success: _Optional[float] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("version", "tiers", "threshold", "threshold_rule", "encoder", "metrics", "data_fingerprint", "source", "manifest_json", "live_calibration", "explore_rate")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_RULE_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DATA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    LIVE_CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    EXPLORE_RATE_FIELD_NUMBER: _ClassVar[int]
    version: str
    tiers: _containers.RepeatedCompositeFieldContainer[TierInfo]
    threshold: float
    threshold_rule: str
    encoder: str
    metrics: _containers.ScalarMap[str, float]
    data_fingerprint: str
    source: str
    manifest_json: str
    live_calibration: _containers.RepeatedCompositeFieldContainer[LiveCalibration]
    explore_rate: float
    def __init__(self, version: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[TierInfo, _Mapping]]] = ..., threshold: _Optional[float] = ..., threshold_rule: _Optional[str] = ..., encoder: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., data_fingerprint: _Optional[str] = ..., source: _Optional[str] = ..., manifest_json: _Optional[str] = ..., live_calibration: _Optional[_Iterable[_Union[LiveCalibration, _Mapping]]] = ..., explore_rate: _Optional[float] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("request_id", "model", "attempt", "success", "score", "cost_usd", "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "latency_ms", "ttft_ms", "error", "workload")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_CREATION_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    attempt: int
    success: bool
    score: float
    cost_usd: float
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    latency_ms: float
    ttft_ms: float
    error: str
    workload: str
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., attempt: _Optional[int] = ..., success: _Optional[bool] = ..., score: _Optional[float] = ..., cost_usd: _Optional[float] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cache_read_input_tokens: _Optional[int] = ..., cache_creation_input_tokens: _Optional[int] = ..., latency_ms: _Optional[float] = ..., ttft_ms: _Optional[float] = ..., error: _Optional[str] = ..., workload: _Optional[str] = ...) -> None: ...

class OutcomeAck(_message.Message):
    __slots__ = ("request_id", "known_request")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KNOWN_REQUEST_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    known_request: bool
    def __init__(self, request_id: _Optional[str] = ..., known_request: _Optional[bool] = ...) -> None: ...

class OutcomesSummary(_message.Message):
    __slots__ = ("received", "unknown_requests")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    received: int
    unknown_requests: int
    def __init__(self, received: _Optional[int] = ..., unknown_requests: _Optional[int] = ...) -> None: ...
