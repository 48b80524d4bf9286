"""Where a bundle keeps its per-user rankings (`rank.precomputed`): in the bundle itself
(`rankings.npz`, the default), or in Redis for catalogues of users too many for every server to
hold in memory (about 5.3 KB a user in the bundle, 6.3 KB of Redis memory: 10 million users
are ~63 GB in Redis).

Both answer `user(u) -> UserRanking` (the `RankingStore` protocol). In Redis each user is one
key, `<prefix>:<version>:<user>`, holding the user's ranking packed as the bundle's file packs
it (`UserRanking.to_bytes`: a JSON header and the raw arrays, no pickle), and
`<prefix>:<version>:meta` records how many users, the channels and a digest of every payload,
checked when a server opens the bundle; a store that does not match is refused like a
corrupt file. Keys of a bundle version are removed when the version is pruned.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from typing import Iterable, Protocol

from movierec.errors import MovieRecError

from .precomputed import PrecomputedRankings, UserRanking

SLOTS = ("popular", "new")
DIGEST_BYTES = 32
KEY_PREFIX = "movierec:rankings"
URL_VARIABLE = "MOVIEREC_RANKINGS_URL"   # overrides the manifest's URL (which holds no password)


class RankingStoreError(MovieRecError):
    """A ranking store that cannot be reached or does not hold what the bundle says."""


class RankingStore(Protocol):
    channels: tuple
    num_users: int

    def user(self, user: int) -> UserRanking: ...


def _redis(url: str):
    try:
        import redis
    except ImportError:
        raise RankingStoreError("rankings in Redis need the redis client: pip install 'movierec[redis]'") from None
    try:
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        client.ping()
    except redis.RedisError as exc:
        raise RankingStoreError(f"cannot reach the ranking store at {_redact(url)}: {exc}") from None
    return client


@contextmanager
def _store(url: str):
    """A client for a write; a failure on the way is the store's error, not a traceback."""
    import redis

    client = _redis(url)
    try:
        yield client
    except redis.RedisError as exc:
        raise RankingStoreError(f"the ranking store at {_redact(url)} failed: {exc}") from None
    finally:
        client.close()


def store_prefix(version: str) -> str:
    return f"{KEY_PREFIX}:{version}"


def _redact(url: str) -> str:
    from movierec.store.db import redact

    return redact(url)


class RedisRankings:
    def __init__(self, client, prefix: str, channels: tuple, num_users: int):
        self.client, self.prefix, self.channels, self.num_users = client, prefix, channels, num_users

    def user(self, user: int) -> UserRanking:
        payload = self.client.get(f"{self.prefix}:{user}")
        if payload is None:
            raise RankingStoreError(f"the ranking store lost user {user} of {self.prefix}")
        return UserRanking.from_bytes(payload, SLOTS)

    @staticmethod
    def write_block(url: str, prefix: str, first: int, block: PrecomputedRankings) -> bytes:
        """A packed block's users (`first`, `first + 1`, ...) into Redis under `prefix`, from
        whichever process ranked them; returns the SHA-256 of each user's payload, in order, for
        `finish`."""
        digests = []
        with _store(url) as client:
            pipe = client.pipeline(transaction=False)
            for row in range(block.num_rows):
                payload = block.user(row).to_bytes()
                digests.append(hashlib.sha256(payload).digest())
                pipe.set(f"{prefix}:{first + row}", payload)
            pipe.execute()
        return b"".join(digests)

    @staticmethod
    def finish(url: str, prefix: str, channels: tuple, digests: Iterable[bytes]) -> dict:
        """The meta key, once every user is written (`digests`: `write_block`'s, in user order);
        returns the manifest's fragment."""
        digest, users = hashlib.sha256(), 0
        for block in digests:
            digest.update(block)
            users += len(block) // DIGEST_BYTES
        meta = {"users": users, "channels": list(channels), "sha256": digest.hexdigest()}
        with _store(url) as client:
            client.set(f"{prefix}:meta", json.dumps(meta))
        return {"store": "redis", "url": _redact(url), "prefix": prefix, **meta}

    @classmethod
    def write(cls, url: str, prefix: str, channels: tuple, blocks: Iterable[PrecomputedRankings]) -> dict:
        """Blocks of users 1..N, in order, into Redis as they come (none is kept); returns the
        manifest's fragment."""
        def written():
            first = 1
            for block in blocks:
                yield cls.write_block(url, prefix, first, block)
                first += block.num_rows
        return cls.finish(url, prefix, channels, written())

    @classmethod
    def open(cls, fragment: dict) -> "RedisRankings":
        client = _redis(os.environ.get(URL_VARIABLE, fragment["url"]))
        saved = client.get(f"{fragment['prefix']}:meta")
        meta = json.loads(saved) if saved else None
        expected = {key: fragment[key] for key in ("users", "channels", "sha256")}
        if meta != expected:
            raise RankingStoreError(f"the ranking store holds {'nothing' if meta is None else 'other rankings'} for "
                                    f"{fragment['prefix']}; rebuild the bundle")
        return cls(client, fragment["prefix"], tuple(meta["channels"]), int(meta["users"]))

    @staticmethod
    def drop(url: str, prefix: str) -> int:
        """Remove a bundle version's keys; returns how many."""
        client = _redis(os.environ.get(URL_VARIABLE, url))
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        return len(keys)
