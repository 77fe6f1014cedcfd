from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Statistic(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATISTIC_UNSPECIFIED: _ClassVar[Statistic]
    STATISTIC_SUM: _ClassVar[Statistic]
    STATISTIC_COUNT: _ClassVar[Statistic]
    STATISTIC_MEAN: _ClassVar[Statistic]
    STATISTIC_VARIANCE: _ClassVar[Statistic]
    STATISTIC_HISTOGRAM: _ClassVar[Statistic]
    STATISTIC_MAX: _ClassVar[Statistic]
    STATISTIC_MIN: _ClassVar[Statistic]
    STATISTIC_ARGMAX: _ClassVar[Statistic]
    STATISTIC_THRESHOLD: _ClassVar[Statistic]
    STATISTIC_SECOND_PRICE: _ClassVar[Statistic]
    STATISTIC_NOISY_ARGMAX: _ClassVar[Statistic]
    STATISTIC_QUANTILE: _ClassVar[Statistic]
    STATISTIC_MEDIAN: _ClassVar[Statistic]

class Mechanism(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MECHANISM_UNSPECIFIED: _ClassVar[Mechanism]
    MECHANISM_DISCRETE_LAPLACE: _ClassVar[Mechanism]
    MECHANISM_SKELLAM: _ClassVar[Mechanism]

class Sharing(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHARING_UNSPECIFIED: _ClassVar[Sharing]
    SHARING_SEEDED: _ClassVar[Sharing]
    SHARING_FULL: _ClassVar[Sharing]
    SHARING_KEYED: _ClassVar[Sharing]

class RefusalStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFUSAL_STATUS_UNSPECIFIED: _ClassVar[RefusalStatus]
    REFUSAL_STATUS_INVALID_ARGUMENT: _ClassVar[RefusalStatus]
    REFUSAL_STATUS_FAILED_PRECONDITION: _ClassVar[RefusalStatus]
    REFUSAL_STATUS_PERMISSION_DENIED: _ClassVar[RefusalStatus]
    REFUSAL_STATUS_NOT_FOUND: _ClassVar[RefusalStatus]
    REFUSAL_STATUS_ALREADY_EXISTS: _ClassVar[RefusalStatus]
    REFUSAL_STATUS_DEADLINE_EXCEEDED: _ClassVar[RefusalStatus]
    REFUSAL_STATUS_RESOURCE_EXHAUSTED: _ClassVar[RefusalStatus]
    REFUSAL_STATUS_ABORTED: _ClassVar[RefusalStatus]
STATISTIC_UNSPECIFIED: Statistic
STATISTIC_SUM: Statistic
STATISTIC_COUNT: Statistic
STATISTIC_MEAN: Statistic
STATISTIC_VARIANCE: Statistic
STATISTIC_HISTOGRAM: Statistic
STATISTIC_MAX: Statistic
STATISTIC_MIN: Statistic
STATISTIC_ARGMAX: Statistic
STATISTIC_THRESHOLD: Statistic
STATISTIC_SECOND_PRICE: Statistic
STATISTIC_NOISY_ARGMAX: Statistic
STATISTIC_QUANTILE: Statistic
STATISTIC_MEDIAN: Statistic
MECHANISM_UNSPECIFIED: Mechanism
MECHANISM_DISCRETE_LAPLACE: Mechanism
MECHANISM_SKELLAM: Mechanism
SHARING_UNSPECIFIED: Sharing
SHARING_SEEDED: Sharing
SHARING_FULL: Sharing
SHARING_KEYED: Sharing
REFUSAL_STATUS_UNSPECIFIED: RefusalStatus
REFUSAL_STATUS_INVALID_ARGUMENT: RefusalStatus
REFUSAL_STATUS_FAILED_PRECONDITION: RefusalStatus
REFUSAL_STATUS_PERMISSION_DENIED: RefusalStatus
REFUSAL_STATUS_NOT_FOUND: RefusalStatus
REFUSAL_STATUS_ALREADY_EXISTS: RefusalStatus
REFUSAL_STATUS_DEADLINE_EXCEEDED: RefusalStatus
REFUSAL_STATUS_RESOURCE_EXHAUSTED: RefusalStatus
REFUSAL_STATUS_ABORTED: RefusalStatus

class QuerySpec(_message.Message):
    __slots__ = ("statistic", "parties", "session_id", "column", "dimension", "lower", "upper", "categories", "frac_bits", "max_records", "epsilon", "delta", "mechanism", "colluders", "sharing", "deadline", "fraction", "quantile", "edges")
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    FRAC_BITS_FIELD_NUMBER: _ClassVar[int]
    MAX_RECORDS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    COLLUDERS_FIELD_NUMBER: _ClassVar[int]
    SHARING_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    statistic: Statistic
    parties: _containers.RepeatedScalarFieldContainer[str]
    session_id: bytes
    column: str
    dimension: int
    lower: float
    upper: float
    categories: _containers.RepeatedScalarFieldContainer[str]
    frac_bits: int
    max_records: int
    epsilon: float
    delta: float
    mechanism: Mechanism
    colluders: int
    sharing: Sharing
    deadline: float
    fraction: float
    quantile: float
    edges: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, statistic: _Optional[_Union[Statistic, str]] = ..., parties: _Optional[_Iterable[str]] = ..., session_id: _Optional[bytes] = ..., column: _Optional[str] = ..., dimension: _Optional[int] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., categories: _Optional[_Iterable[str]] = ..., frac_bits: _Optional[int] = ..., max_records: _Optional[int] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., mechanism: _Optional[_Union[Mechanism, str]] = ..., colluders: _Optional[int] = ..., sharing: _Optional[_Union[Sharing, str]] = ..., deadline: _Optional[float] = ..., fraction: _Optional[float] = ..., quantile: _Optional[float] = ..., edges: _Optional[_Iterable[float]] = ...) -> None: ...

class Abort(_message.Message):
    __slots__ = ("session_id", "sender", "reason", "culprit")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CULPRIT_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    sender: str
    reason: str
    culprit: str
    def __init__(self, session_id: _Optional[bytes] = ..., sender: _Optional[str] = ..., reason: _Optional[str] = ..., culprit: _Optional[str] = ...) -> None: ...

class VectorChunk(_message.Message):
    __slots__ = ("offset", "data")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Propose(_message.Message):
    __slots__ = ("spec", "start", "batch")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    spec: QuerySpec
    start: bool
    batch: _containers.RepeatedCompositeFieldContainer[QuerySpec]
    def __init__(self, spec: _Optional[_Union[QuerySpec, _Mapping]] = ..., start: _Optional[bool] = ..., batch: _Optional[_Iterable[_Union[QuerySpec, _Mapping]]] = ...) -> None: ...

class ProposeResponse(_message.Message):
    __slots__ = ("session_id", "party", "accepted", "reason", "status", "waits")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WAITS_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    party: str
    accepted: bool
    reason: str
    status: RefusalStatus
    waits: bool
    def __init__(self, session_id: _Optional[bytes] = ..., party: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., status: _Optional[_Union[RefusalStatus, str]] = ..., waits: _Optional[bool] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: QuerySpec
    def __init__(self, spec: _Optional[_Union[QuerySpec, _Mapping]] = ...) -> None: ...

class CompareReply(_message.Message):
    __slots__ = ("session_id", "entries")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    entries: _containers.RepeatedCompositeFieldContainer[ReleaseEntry]
    def __init__(self, session_id: _Optional[bytes] = ..., entries: _Optional[_Iterable[_Union[ReleaseEntry, _Mapping]]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("spec", "timeout_seconds", "confidence", "quorum", "batch")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    spec: QuerySpec
    timeout_seconds: float
    confidence: float
    quorum: int
    batch: _containers.RepeatedCompositeFieldContainer[QuerySpec]
    def __init__(self, spec: _Optional[_Union[QuerySpec, _Mapping]] = ..., timeout_seconds: _Optional[float] = ..., confidence: _Optional[float] = ..., quorum: _Optional[int] = ..., batch: _Optional[_Iterable[_Union[QuerySpec, _Mapping]]] = ...) -> None: ...

class Values(_message.Message):
    __slots__ = ("scalar", "integer", "label", "packed", "streamed")
    SCALAR_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    STREAMED_FIELD_NUMBER: _ClassVar[int]
    scalar: float
    integer: int
    label: str
    packed: bytes
    streamed: int
    def __init__(self, scalar: _Optional[float] = ..., integer: _Optional[int] = ..., label: _Optional[str] = ..., packed: _Optional[bytes] = ..., streamed: _Optional[int] = ...) -> None: ...

class Interval(_message.Message):
    __slots__ = ("half_width", "ends", "unavailable")
    HALF_WIDTH_FIELD_NUMBER: _ClassVar[int]
    ENDS_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    half_width: float
    ends: Ends
    unavailable: bool
    def __init__(self, half_width: _Optional[float] = ..., ends: _Optional[_Union[Ends, _Mapping]] = ..., unavailable: _Optional[bool] = ...) -> None: ...

class Ends(_message.Message):
    __slots__ = ("lower", "upper")
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    lower: Values
    upper: Values
    def __init__(self, lower: _Optional[_Union[Values, _Mapping]] = ..., upper: _Optional[_Union[Values, _Mapping]] = ...) -> None: ...

class ReleaseEntry(_message.Message):
    __slots__ = ("name", "value", "noise_std", "interval")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NOISE_STD_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: Values
    noise_std: float
    interval: Interval
    def __init__(self, name: _Optional[str] = ..., value: _Optional[_Union[Values, _Mapping]] = ..., noise_std: _Optional[float] = ..., interval: _Optional[_Union[Interval, _Mapping]] = ...) -> None: ...

class QueryReply(_message.Message):
    __slots__ = ("session_id", "statistic", "entries", "parties", "epsilon", "delta", "mechanism", "confidence", "quorum", "dropped", "index", "sharing", "sharing_note", "batch_size", "batch_epsilon", "batch_delta")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SHARING_FIELD_NUMBER: _ClassVar[int]
    SHARING_NOTE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_EPSILON_FIELD_NUMBER: _ClassVar[int]
    BATCH_DELTA_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    statistic: Statistic
    entries: _containers.RepeatedCompositeFieldContainer[ReleaseEntry]
    parties: _containers.RepeatedScalarFieldContainer[str]
    epsilon: float
    delta: float
    mechanism: Mechanism
    confidence: float
    quorum: int
    dropped: _containers.RepeatedScalarFieldContainer[str]
    index: int
    sharing: Sharing
    sharing_note: str
    batch_size: int
    batch_epsilon: float
    batch_delta: float
    def __init__(self, session_id: _Optional[bytes] = ..., statistic: _Optional[_Union[Statistic, str]] = ..., entries: _Optional[_Iterable[_Union[ReleaseEntry, _Mapping]]] = ..., parties: _Optional[_Iterable[str]] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., mechanism: _Optional[_Union[Mechanism, str]] = ..., confidence: _Optional[float] = ..., quorum: _Optional[int] = ..., dropped: _Optional[_Iterable[str]] = ..., index: _Optional[int] = ..., sharing: _Optional[_Union[Sharing, str]] = ..., sharing_note: _Optional[str] = ..., batch_size: _Optional[int] = ..., batch_epsilon: _Optional[float] = ..., batch_delta: _Optional[float] = ...) -> None: ...

class ReleaseVector(_message.Message):
    __slots__ = ("name", "part", "length", "first")
    class Part(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PART_UNSPECIFIED: _ClassVar[ReleaseVector.Part]
        PART_VALUE: _ClassVar[ReleaseVector.Part]
        PART_LOWER: _ClassVar[ReleaseVector.Part]
        PART_UPPER: _ClassVar[ReleaseVector.Part]
    PART_UNSPECIFIED: ReleaseVector.Part
    PART_VALUE: ReleaseVector.Part
    PART_LOWER: ReleaseVector.Part
    PART_UPPER: ReleaseVector.Part
    NAME_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    name: str
    part: ReleaseVector.Part
    length: int
    first: VectorChunk
    def __init__(self, name: _Optional[str] = ..., part: _Optional[_Union[ReleaseVector.Part, str]] = ..., length: _Optional[int] = ..., first: _Optional[_Union[VectorChunk, _Mapping]] = ...) -> None: ...

class ReleaseLabels(_message.Message):
    __slots__ = ("categories",)
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, categories: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryReplyPart(_message.Message):
    __slots__ = ("reply", "vector", "chunk", "labels")
    REPLY_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    reply: QueryReply
    vector: ReleaseVector
    chunk: VectorChunk
    labels: ReleaseLabels
    def __init__(self, reply: _Optional[_Union[QueryReply, _Mapping]] = ..., vector: _Optional[_Union[ReleaseVector, _Mapping]] = ..., chunk: _Optional[_Union[VectorChunk, _Mapping]] = ..., labels: _Optional[_Union[ReleaseLabels, _Mapping]] = ...) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    def __init__(self, session_id: _Optional[bytes] = ...) -> None: ...

class LinkPortRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LinkPort(_message.Message):
    __slots__ = ("port",)
    PORT_FIELD_NUMBER: _ClassVar[int]
    port: int
    def __init__(self, port: _Optional[int] = ...) -> None: ...
