from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SanitizeRequest(_message.Message):
    __slots__ = ("id", "text", "mechanism", "epsilon")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    mechanism: str
    epsilon: float
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., mechanism: _Optional[str] = ..., epsilon: _Optional[float] = ...) -> None: ...

class PrivacyCost(_message.Message):
    __slots__ = ("mechanism", "epsilon_per_word", "words_perturbed", "oov_words", "oov_released", "text_epsilon_bound", "symbols_released")
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    EPSILON_PER_WORD_FIELD_NUMBER: _ClassVar[int]
    WORDS_PERTURBED_FIELD_NUMBER: _ClassVar[int]
    OOV_WORDS_FIELD_NUMBER: _ClassVar[int]
    OOV_RELEASED_FIELD_NUMBER: _ClassVar[int]
    TEXT_EPSILON_BOUND_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_RELEASED_FIELD_NUMBER: _ClassVar[int]
    mechanism: str
    epsilon_per_word: float
    words_perturbed: int
    oov_words: int
    oov_released: int
    text_epsilon_bound: float
    symbols_released: int
    def __init__(self, mechanism: _Optional[str] = ..., epsilon_per_word: _Optional[float] = ..., words_perturbed: _Optional[int] = ..., oov_words: _Optional[int] = ..., oov_released: _Optional[int] = ..., text_epsilon_bound: _Optional[float] = ..., symbols_released: _Optional[int] = ...) -> None: ...

class SanitizeResponse(_message.Message):
    __slots__ = ("id", "text", "cost")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    cost: PrivacyCost
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., cost: _Optional[_Union[PrivacyCost, _Mapping]] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MechanismInfo(_message.Message):
    __slots__ = ("name", "min_epsilon_exclusive")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_EPSILON_EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    min_epsilon_exclusive: float
    def __init__(self, name: _Optional[str] = ..., min_epsilon_exclusive: _Optional[float] = ...) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("vocabulary_size", "dimension", "embedding_fingerprint", "diameter", "min_distance", "mechanisms", "max_text_chars", "oov_policy", "symbol_policy", "max_requests_per_client", "idle_timeout_seconds")
    VOCABULARY_SIZE_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    DIAMETER_FIELD_NUMBER: _ClassVar[int]
    MIN_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    MECHANISMS_FIELD_NUMBER: _ClassVar[int]
    MAX_TEXT_CHARS_FIELD_NUMBER: _ClassVar[int]
    OOV_POLICY_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_POLICY_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUESTS_PER_CLIENT_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    vocabulary_size: int
    dimension: int
    embedding_fingerprint: str
    diameter: float
    min_distance: float
    mechanisms: _containers.RepeatedCompositeFieldContainer[MechanismInfo]
    max_text_chars: int
    oov_policy: str
    symbol_policy: str
    max_requests_per_client: int
    idle_timeout_seconds: float
    def __init__(self, vocabulary_size: _Optional[int] = ..., dimension: _Optional[int] = ..., embedding_fingerprint: _Optional[str] = ..., diameter: _Optional[float] = ..., min_distance: _Optional[float] = ..., mechanisms: _Optional[_Iterable[_Union[MechanismInfo, _Mapping]]] = ..., max_text_chars: _Optional[int] = ..., oov_policy: _Optional[str] = ..., symbol_policy: _Optional[str] = ..., max_requests_per_client: _Optional[int] = ..., idle_timeout_seconds: _Optional[float] = ...) -> None: ...
