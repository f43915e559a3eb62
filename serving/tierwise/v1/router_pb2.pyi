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
    __slots__ = ("prompt", "messages", "request_id", "quality_target", "allowed_tiers", "latency_band", "mode")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUALITY_TARGET_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_TIERS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_BAND_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    request_id: str
    quality_target: float
    allowed_tiers: _containers.RepeatedScalarFieldContainer[str]
    latency_band: LatencyBand
    mode: RoutingMode
    def __init__(self, prompt: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., request_id: _Optional[str] = ..., quality_target: _Optional[float] = ..., allowed_tiers: _Optional[_Iterable[str]] = ..., latency_band: _Optional[_Union[LatencyBand, str]] = ..., mode: _Optional[_Union[RoutingMode, str]] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("request_id", "tier", "model", "probabilities", "fallback_chain", "model_version", "inference_us", "quality_target", "mode", "expected_cost_usd", "use_batch_api")
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
    def __init__(self, request_id: _Optional[str] = ..., tier: _Optional[str] = ..., model: _Optional[str] = ..., probabilities: _Optional[_Mapping[str, float]] = ..., fallback_chain: _Optional[_Iterable[str]] = ..., model_version: _Optional[str] = ..., inference_us: _Optional[int] = ..., quality_target: _Optional[float] = ..., mode: _Optional[_Union[RoutingMode, str]] = ..., expected_cost_usd: _Optional[float] = ..., use_batch_api: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("name", "model", "models", "input_usd_per_mtok", "output_usd_per_mtok")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    INPUT_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_USD_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    models: _containers.RepeatedScalarFieldContainer[str]
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., input_usd_per_mtok: _Optional[float] = ..., output_usd_per_mtok: _Optional[float] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("version", "tiers", "threshold", "threshold_rule", "encoder", "metrics", "data_fingerprint", "source", "manifest_json")
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
    version: str
    tiers: _containers.RepeatedCompositeFieldContainer[TierInfo]
    threshold: float
    threshold_rule: str
    encoder: str
    metrics: _containers.ScalarMap[str, float]
    data_fingerprint: str
    source: str
    manifest_json: str
    def __init__(self, version: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[TierInfo, _Mapping]]] = ..., threshold: _Optional[float] = ..., threshold_rule: _Optional[str] = ..., encoder: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., data_fingerprint: _Optional[str] = ..., source: _Optional[str] = ..., manifest_json: _Optional[str] = ...) -> None: ...
