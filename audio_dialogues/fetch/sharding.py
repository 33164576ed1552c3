"""Splitting a fetch across machines by video, the same way on every machine."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from ..sources.clips import Clip


def shard_index_of(ytid: str, num_shards: int) -> int:
    """The shard of a video among ``num_shards``: a stable hash, the same on every machine."""
    return int(hashlib.sha1(ytid.encode("ascii")).hexdigest()[-8:], 16) % num_shards


def select_shard(clips: Iterable[Clip], num_shards: int, shard_index: int) -> Iterator[Clip]:
    for clip in clips:
        if num_shards == 1 or shard_index_of(clip.ytid, num_shards) == shard_index:
            yield clip
