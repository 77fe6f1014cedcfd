from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QuerySpec(_message.Message):
    __slots__ = ("statistic", "parties", "session_id", "column", "dimension", "lower", "upper", "categories", "frac_bits", "max_records", "exact", "epsilon", "delta", "mechanism", "colluders", "sharing", "deadline", "fraction", "quantile", "edges")
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
    EXACT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    COLLUDERS_FIELD_NUMBER: _ClassVar[int]
    SHARING_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    QUANTILE_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    statistic: str
    parties: _containers.RepeatedScalarFieldContainer[str]
    session_id: bytes
    column: str
    dimension: int
    lower: float
    upper: float
    categories: _containers.RepeatedScalarFieldContainer[str]
    frac_bits: int
    max_records: int
    exact: bool
    epsilon: float
    delta: float
    mechanism: str
    colluders: int
    sharing: str
    deadline: float
    fraction: float
    quantile: float
    edges: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, statistic: _Optional[str] = ..., parties: _Optional[_Iterable[str]] = ..., session_id: _Optional[bytes] = ..., column: _Optional[str] = ..., dimension: _Optional[int] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., categories: _Optional[_Iterable[str]] = ..., frac_bits: _Optional[int] = ..., max_records: _Optional[int] = ..., exact: _Optional[bool] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., mechanism: _Optional[str] = ..., colluders: _Optional[int] = ..., sharing: _Optional[str] = ..., deadline: _Optional[float] = ..., fraction: _Optional[float] = ..., quantile: _Optional[float] = ..., edges: _Optional[_Iterable[float]] = ...) -> None: ...

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
    __slots__ = ("spec", "start")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    spec: QuerySpec
    start: bool
    def __init__(self, spec: _Optional[_Union[QuerySpec, _Mapping]] = ..., start: _Optional[bool] = ...) -> None: ...

class StartSharing(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    def __init__(self, session_id: _Optional[bytes] = ...) -> None: ...

class CoordinatorToParty(_message.Message):
    __slots__ = ("propose", "start_sharing", "abort")
    PROPOSE_FIELD_NUMBER: _ClassVar[int]
    START_SHARING_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    propose: Propose
    start_sharing: StartSharing
    abort: Abort
    def __init__(self, propose: _Optional[_Union[Propose, _Mapping]] = ..., start_sharing: _Optional[_Union[StartSharing, _Mapping]] = ..., abort: _Optional[_Union[Abort, _Mapping]] = ...) -> None: ...

class ProposeResponse(_message.Message):
    __slots__ = ("session_id", "party", "accepted", "reason", "status")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    party: str
    accepted: bool
    reason: str
    status: str
    def __init__(self, session_id: _Optional[bytes] = ..., party: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class PartialSumHeader(_message.Message):
    __slots__ = ("session_id", "sender", "length", "first")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    sender: str
    length: int
    first: VectorChunk
    def __init__(self, session_id: _Optional[bytes] = ..., sender: _Optional[str] = ..., length: _Optional[int] = ..., first: _Optional[_Union[VectorChunk, _Mapping]] = ...) -> None: ...

class PartyToCoordinator(_message.Message):
    __slots__ = ("response", "partial_sum", "chunk", "abort")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_SUM_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    response: ProposeResponse
    partial_sum: PartialSumHeader
    chunk: VectorChunk
    abort: Abort
    def __init__(self, response: _Optional[_Union[ProposeResponse, _Mapping]] = ..., partial_sum: _Optional[_Union[PartialSumHeader, _Mapping]] = ..., chunk: _Optional[_Union[VectorChunk, _Mapping]] = ..., abort: _Optional[_Union[Abort, _Mapping]] = ...) -> None: ...

class ShareHeader(_message.Message):
    __slots__ = ("session_id", "sender", "recipient", "seed", "vector_length")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    VECTOR_LENGTH_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    sender: str
    recipient: str
    seed: bytes
    vector_length: int
    def __init__(self, session_id: _Optional[bytes] = ..., sender: _Optional[str] = ..., recipient: _Optional[str] = ..., seed: _Optional[bytes] = ..., vector_length: _Optional[int] = ...) -> None: ...

class PeerToPeer(_message.Message):
    __slots__ = ("share", "chunk", "abort")
    SHARE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    share: ShareHeader
    chunk: VectorChunk
    abort: Abort
    def __init__(self, share: _Optional[_Union[ShareHeader, _Mapping]] = ..., chunk: _Optional[_Union[VectorChunk, _Mapping]] = ..., abort: _Optional[_Union[Abort, _Mapping]] = ...) -> None: ...

class ShareAck(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    def __init__(self, session_id: _Optional[bytes] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("session_id", "statistic", "column", "parties", "fraction_num", "fraction_den", "deadline", "timeout_seconds", "spec")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    FRACTION_NUM_FIELD_NUMBER: _ClassVar[int]
    FRACTION_DEN_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    statistic: str
    column: str
    parties: _containers.RepeatedScalarFieldContainer[str]
    fraction_num: int
    fraction_den: int
    deadline: float
    timeout_seconds: float
    spec: QuerySpec
    def __init__(self, session_id: _Optional[bytes] = ..., statistic: _Optional[str] = ..., column: _Optional[str] = ..., parties: _Optional[_Iterable[str]] = ..., fraction_num: _Optional[int] = ..., fraction_den: _Optional[int] = ..., deadline: _Optional[float] = ..., timeout_seconds: _Optional[float] = ..., spec: _Optional[_Union[QuerySpec, _Mapping]] = ...) -> None: ...

class CompareReply(_message.Message):
    __slots__ = ("session_id", "statistic", "release")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    statistic: str
    release: str
    def __init__(self, session_id: _Optional[bytes] = ..., statistic: _Optional[str] = ..., release: _Optional[str] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("spec", "timeout_seconds", "confidence")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    spec: QuerySpec
    timeout_seconds: float
    confidence: float
    def __init__(self, spec: _Optional[_Union[QuerySpec, _Mapping]] = ..., timeout_seconds: _Optional[float] = ..., confidence: _Optional[float] = ...) -> None: ...

class QueryReply(_message.Message):
    __slots__ = ("session_id", "statistic", "result", "parties", "exact", "epsilon", "delta", "mechanism", "noise", "intervals", "confidence", "vectors", "interval_lower", "interval_upper")
    class VectorsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class IntervalLowerEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    class IntervalUpperEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATISTIC_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    NOISE_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_LOWER_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_UPPER_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    statistic: str
    result: _struct_pb2.Struct
    parties: _containers.RepeatedScalarFieldContainer[str]
    exact: bool
    epsilon: float
    delta: float
    mechanism: str
    noise: _struct_pb2.Struct
    intervals: _struct_pb2.Struct
    confidence: float
    vectors: _containers.ScalarMap[str, bytes]
    interval_lower: _containers.ScalarMap[str, bytes]
    interval_upper: _containers.ScalarMap[str, bytes]
    def __init__(self, session_id: _Optional[bytes] = ..., statistic: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., parties: _Optional[_Iterable[str]] = ..., exact: _Optional[bool] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., mechanism: _Optional[str] = ..., noise: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., intervals: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., confidence: _Optional[float] = ..., vectors: _Optional[_Mapping[str, bytes]] = ..., interval_lower: _Optional[_Mapping[str, bytes]] = ..., interval_upper: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class ReleaseVector(_message.Message):
    __slots__ = ("name", "interval_end", "length", "first")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_END_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    name: str
    interval_end: str
    length: int
    first: VectorChunk
    def __init__(self, name: _Optional[str] = ..., interval_end: _Optional[str] = ..., length: _Optional[int] = ..., first: _Optional[_Union[VectorChunk, _Mapping]] = ...) -> None: ...

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

class Frame(_message.Message):
    __slots__ = ("session_id", "round", "kind", "offset", "total", "payload", "sender")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    session_id: bytes
    round: int
    kind: str
    offset: int
    total: int
    payload: bytes
    sender: str
    def __init__(self, session_id: _Optional[bytes] = ..., round: _Optional[int] = ..., kind: _Optional[str] = ..., offset: _Optional[int] = ..., total: _Optional[int] = ..., payload: _Optional[bytes] = ..., sender: _Optional[str] = ...) -> None: ...
