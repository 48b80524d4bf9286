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

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_RATING: _ClassVar[EventKind]
    EVENT_KIND_WATCH: _ClassVar[EventKind]
    EVENT_KIND_LIKE: _ClassVar[EventKind]
    EVENT_KIND_DISLIKE: _ClassVar[EventKind]
GENDER_UNSPECIFIED: Gender
GENDER_MALE: Gender
GENDER_FEMALE: Gender
SLOT_UNSPECIFIED: Slot
SLOT_POPULAR: Slot
SLOT_NEW: Slot
SLOT_PERSONALIZED: Slot
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_RATING: EventKind
EVENT_KIND_WATCH: EventKind
EVENT_KIND_LIKE: EventKind
EVENT_KIND_DISLIKE: EventKind

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
    __slots__ = ("recall_ms", "rank_ms", "blend_ms", "total_ms", "precomputed", "cached")
    RECALL_MS_FIELD_NUMBER: _ClassVar[int]
    RANK_MS_FIELD_NUMBER: _ClassVar[int]
    BLEND_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    PRECOMPUTED_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    recall_ms: float
    rank_ms: float
    blend_ms: float
    total_ms: float
    precomputed: bool
    cached: bool
    def __init__(self, recall_ms: _Optional[float] = ..., rank_ms: _Optional[float] = ..., blend_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., precomputed: _Optional[bool] = ..., cached: _Optional[bool] = ...) -> None: ...

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

class FeedbackEvent(_message.Message):
    __slots__ = ("event_id", "user_id", "item_id", "kind", "rating", "timestamp")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    user_id: int
    item_id: int
    kind: EventKind
    rating: int
    timestamp: int
    def __init__(self, event_id: _Optional[str] = ..., user_id: _Optional[int] = ..., item_id: _Optional[int] = ..., kind: _Optional[_Union[EventKind, str]] = ..., rating: _Optional[int] = ..., timestamp: _Optional[int] = ...) -> None: ...

class AddFeedbackRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[FeedbackEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[FeedbackEvent, _Mapping]]] = ...) -> None: ...

class Rejected(_message.Message):
    __slots__ = ("index", "key", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    key: str
    reason: str
    def __init__(self, index: _Optional[int] = ..., key: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AddFeedbackResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: _containers.RepeatedCompositeFieldContainer[Rejected]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[Rejected, _Mapping]]] = ...) -> None: ...

class Movie(_message.Message):
    __slots__ = ("item_id", "title", "year", "genres", "plot", "poster")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    YEAR_FIELD_NUMBER: _ClassVar[int]
    GENRES_FIELD_NUMBER: _ClassVar[int]
    PLOT_FIELD_NUMBER: _ClassVar[int]
    POSTER_FIELD_NUMBER: _ClassVar[int]
    item_id: int
    title: str
    year: int
    genres: _containers.RepeatedScalarFieldContainer[str]
    plot: str
    poster: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, item_id: _Optional[int] = ..., title: _Optional[str] = ..., year: _Optional[int] = ..., genres: _Optional[_Iterable[str]] = ..., plot: _Optional[str] = ..., poster: _Optional[_Iterable[float]] = ...) -> None: ...

class UpsertItemsRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Movie]
    def __init__(self, items: _Optional[_Iterable[_Union[Movie, _Mapping]]] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("user_id", "side_features")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SIDE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    side_features: SideFeatures
    def __init__(self, user_id: _Optional[int] = ..., side_features: _Optional[_Union[SideFeatures, _Mapping]] = ...) -> None: ...

class UpsertUsersRequest(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("inserted", "updated", "rejected")
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    inserted: int
    updated: int
    rejected: _containers.RepeatedCompositeFieldContainer[Rejected]
    def __init__(self, inserted: _Optional[int] = ..., updated: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[Rejected, _Mapping]]] = ...) -> None: ...
