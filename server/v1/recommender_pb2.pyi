from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Gender(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GENDER_UNSPECIFIED: _ClassVar[Gender]
    GENDER_MALE: _ClassVar[Gender]
    GENDER_FEMALE: _ClassVar[Gender]

class Slot(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLOT_UNSPECIFIED: _ClassVar[Slot]
    SLOT_POPULAR: _ClassVar[Slot]
    SLOT_NEW: _ClassVar[Slot]
    SLOT_PERSONALIZED: _ClassVar[Slot]
GENDER_UNSPECIFIED: Gender
GENDER_MALE: Gender
GENDER_FEMALE: Gender
SLOT_UNSPECIFIED: Slot
SLOT_POPULAR: Slot
SLOT_NEW: Slot
SLOT_PERSONALIZED: Slot

class SideFeatures(_message.Message):
    __slots__ = ("gender", "age", "occupation", "zip_code")
    GENDER_FIELD_NUMBER: _ClassVar[int]
    AGE_FIELD_NUMBER: _ClassVar[int]
    OCCUPATION_FIELD_NUMBER: _ClassVar[int]
    ZIP_CODE_FIELD_NUMBER: _ClassVar[int]
    gender: Gender
    age: int
    occupation: str
    zip_code: str
    def __init__(self, gender: _Optional[_Union[Gender, str]] = ..., age: _Optional[int] = ..., occupation: _Optional[str] = ..., zip_code: _Optional[str] = ...) -> None: ...

class Filters(_message.Message):
    __slots__ = ("include_genres", "exclude_genres", "min_year", "max_year")
    INCLUDE_GENRES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_GENRES_FIELD_NUMBER: _ClassVar[int]
    MIN_YEAR_FIELD_NUMBER: _ClassVar[int]
    MAX_YEAR_FIELD_NUMBER: _ClassVar[int]
    include_genres: _containers.RepeatedScalarFieldContainer[str]
    exclude_genres: _containers.RepeatedScalarFieldContainer[str]
    min_year: int
    max_year: int
    def __init__(self, include_genres: _Optional[_Iterable[str]] = ..., exclude_genres: _Optional[_Iterable[str]] = ..., min_year: _Optional[int] = ..., max_year: _Optional[int] = ...) -> None: ...

class Quotas(_message.Message):
    __slots__ = ("popular", "new", "personalized")
    POPULAR_FIELD_NUMBER: _ClassVar[int]
    NEW_FIELD_NUMBER: _ClassVar[int]
    PERSONALIZED_FIELD_NUMBER: _ClassVar[int]
    popular: float
    new: float
    personalized: float
    def __init__(self, popular: _Optional[float] = ..., new: _Optional[float] = ..., personalized: _Optional[float] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "n", "recent_item_ids", "exclude_item_ids", "side_features", "filters", "quotas", "explain")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    RECENT_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    SIDE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    n: int
    recent_item_ids: _containers.RepeatedScalarFieldContainer[int]
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[int]
    side_features: SideFeatures
    filters: Filters
    quotas: Quotas
    explain: bool
    def __init__(self, user_id: _Optional[int] = ..., n: _Optional[int] = ..., recent_item_ids: _Optional[_Iterable[int]] = ..., exclude_item_ids: _Optional[_Iterable[int]] = ..., side_features: _Optional[_Union[SideFeatures, _Mapping]] = ..., filters: _Optional[_Union[Filters, _Mapping]] = ..., quotas: _Optional[_Union[Quotas, _Mapping]] = ..., explain: _Optional[bool] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "title", "score", "slot", "channels", "rank_score", "reason")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    RANK_SCORE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    title: str
    score: float
    slot: Slot
    channels: _containers.RepeatedScalarFieldContainer[str]
    rank_score: float
    reason: str
    def __init__(self, item_id: _Optional[int] = ..., title: _Optional[str] = ..., score: _Optional[float] = ..., slot: _Optional[_Union[Slot, str]] = ..., channels: _Optional[_Iterable[str]] = ..., rank_score: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class StageTimings(_message.Message):
    __slots__ = ("recall_ms", "rank_ms", "blend_ms", "total_ms", "precomputed")
    RECALL_MS_FIELD_NUMBER: _ClassVar[int]
    RANK_MS_FIELD_NUMBER: _ClassVar[int]
    BLEND_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    PRECOMPUTED_FIELD_NUMBER: _ClassVar[int]
    recall_ms: float
    rank_ms: float
    blend_ms: float
    total_ms: float
    precomputed: bool
    def __init__(self, recall_ms: _Optional[float] = ..., rank_ms: _Optional[float] = ..., blend_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., precomputed: _Optional[bool] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "bundle_version", "timings", "known_user", "ignored_item_ids")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    KNOWN_USER_FIELD_NUMBER: _ClassVar[int]
    IGNORED_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    bundle_version: str
    timings: StageTimings
    known_user: bool
    ignored_item_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., bundle_version: _Optional[str] = ..., timings: _Optional[_Union[StageTimings, _Mapping]] = ..., known_user: _Optional[bool] = ..., ignored_item_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class GetBundleInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BundleInfo(_message.Message):
    __slots__ = ("version", "users", "items", "device", "index", "loaded_at_unix", "dataset")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    version: str
    users: int
    items: int
    device: str
    index: str
    loaded_at_unix: float
    dataset: str
    def __init__(self, version: _Optional[str] = ..., users: _Optional[int] = ..., items: _Optional[int] = ..., device: _Optional[str] = ..., index: _Optional[str] = ..., loaded_at_unix: _Optional[float] = ..., dataset: _Optional[str] = ...) -> None: ...

class ReloadBundleRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...
