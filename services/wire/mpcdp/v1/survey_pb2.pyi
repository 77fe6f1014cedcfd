from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SurveyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SURVEY_STATE_UNSPECIFIED: _ClassVar[SurveyState]
    SURVEY_STATE_OPEN: _ClassVar[SurveyState]
    SURVEY_STATE_COLLECTING: _ClassVar[SurveyState]
    SURVEY_STATE_PREPARING: _ClassVar[SurveyState]
    SURVEY_STATE_CLOSED: _ClassVar[SurveyState]
    SURVEY_STATE_RELEASED: _ClassVar[SurveyState]
SURVEY_STATE_UNSPECIFIED: SurveyState
SURVEY_STATE_OPEN: SurveyState
SURVEY_STATE_COLLECTING: SurveyState
SURVEY_STATE_PREPARING: SurveyState
SURVEY_STATE_CLOSED: SurveyState
SURVEY_STATE_RELEASED: SurveyState

class SurveyRef(_message.Message):
    __slots__ = ("survey_id", "digest")
    SURVEY_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    survey_id: str
    digest: bytes
    def __init__(self, survey_id: _Optional[str] = ..., digest: _Optional[bytes] = ...) -> None: ...

class Submission(_message.Message):
    __slots__ = ("submission_id", "share")
    SUBMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    submission_id: bytes
    share: bytes
    def __init__(self, submission_id: _Optional[bytes] = ..., share: _Optional[bytes] = ...) -> None: ...

class SubmitBatch(_message.Message):
    __slots__ = ("survey", "submissions")
    SURVEY_FIELD_NUMBER: _ClassVar[int]
    SUBMISSIONS_FIELD_NUMBER: _ClassVar[int]
    survey: SurveyRef
    submissions: _containers.RepeatedCompositeFieldContainer[Submission]
    def __init__(self, survey: _Optional[_Union[SurveyRef, _Mapping]] = ..., submissions: _Optional[_Iterable[_Union[Submission, _Mapping]]] = ...) -> None: ...

class SubmitAck(_message.Message):
    __slots__ = ("batch", "outcomes")
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[SubmitAck.Outcome]
        ACCEPTED: _ClassVar[SubmitAck.Outcome]
        DUPLICATE: _ClassVar[SubmitAck.Outcome]
        CONFLICT: _ClassVar[SubmitAck.Outcome]
    OUTCOME_UNSPECIFIED: SubmitAck.Outcome
    ACCEPTED: SubmitAck.Outcome
    DUPLICATE: SubmitAck.Outcome
    CONFLICT: SubmitAck.Outcome
    BATCH_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    batch: int
    outcomes: _containers.RepeatedScalarFieldContainer[SubmitAck.Outcome]
    def __init__(self, batch: _Optional[int] = ..., outcomes: _Optional[_Iterable[_Union[SubmitAck.Outcome, str]]] = ...) -> None: ...

class SurveyStatus(_message.Message):
    __slots__ = ("state", "submissions")
    STATE_FIELD_NUMBER: _ClassVar[int]
    SUBMISSIONS_FIELD_NUMBER: _ClassVar[int]
    state: SurveyState
    submissions: int
    def __init__(self, state: _Optional[_Union[SurveyState, str]] = ..., submissions: _Optional[int] = ...) -> None: ...

class IdChunk(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: bytes
    def __init__(self, ids: _Optional[bytes] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("survey", "count", "set_digest", "exclude")
    SURVEY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SET_DIGEST_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    survey: SurveyRef
    count: int
    set_digest: bytes
    exclude: bytes
    def __init__(self, survey: _Optional[_Union[SurveyRef, _Mapping]] = ..., count: _Optional[int] = ..., set_digest: _Optional[bytes] = ..., exclude: _Optional[bytes] = ...) -> None: ...

class PartialSum(_message.Message):
    __slots__ = ("vector",)
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    vector: bytes
    def __init__(self, vector: _Optional[bytes] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("survey", "ids")
    SURVEY_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    survey: SurveyRef
    ids: bytes
    def __init__(self, survey: _Optional[_Union[SurveyRef, _Mapping]] = ..., ids: _Optional[bytes] = ...) -> None: ...

class PrepareResult(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: bytes
    def __init__(self, verdicts: _Optional[bytes] = ...) -> None: ...

class PrepInitRequest(_message.Message):
    __slots__ = ("survey", "ids", "verify_key")
    SURVEY_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    VERIFY_KEY_FIELD_NUMBER: _ClassVar[int]
    survey: SurveyRef
    ids: bytes
    verify_key: bytes
    def __init__(self, survey: _Optional[_Union[SurveyRef, _Mapping]] = ..., ids: _Optional[bytes] = ..., verify_key: _Optional[bytes] = ...) -> None: ...

class PrepInitResponse(_message.Message):
    __slots__ = ("shares",)
    SHARES_FIELD_NUMBER: _ClassVar[int]
    shares: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, shares: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PrepFinishRequest(_message.Message):
    __slots__ = ("survey", "ids", "verdicts", "messages")
    SURVEY_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    survey: SurveyRef
    ids: bytes
    verdicts: bytes
    messages: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, survey: _Optional[_Union[SurveyRef, _Mapping]] = ..., ids: _Optional[bytes] = ..., verdicts: _Optional[bytes] = ..., messages: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PrepFinishResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    def __init__(self, accepted: _Optional[int] = ...) -> None: ...
