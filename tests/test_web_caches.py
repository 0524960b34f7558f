"""The search page's bounded caches (cachetools' LRU behind a lock): the recent queries by count."""

from __future__ import annotations

from rvs.query.web.caches import SharedLRU
from rvs.query.web.queries import KEPT_QUERIES, RecentQueries


def test_the_most_recent_queries_are_kept_and_a_search_again_keeps_its_query() -> None:
    queries = RecentQueries()
    ids = [queries.keep([]) for _ in range(KEPT_QUERIES)]
    assert len(set(ids)) == KEPT_QUERIES  # random ids
    assert queries.get(ids[0]) == []  # now the most recently used
    queries.keep([])
    assert queries.get(ids[1]) is None and queries.get(ids[0]) == []
    queries.forget(ids[0])
    assert queries.get(ids[0]) is None


def test_a_value_larger_than_the_cache_is_not_kept_and_evicts_nothing() -> None:
    cache: SharedLRU[str, bytes] = SharedLRU(10, getsizeof=len)
    cache.put("a", b"x" * 6)
    cache.put("b", b"y" * 11)
    assert (cache.get("a"), cache.get("b"), cache.size) == (b"x" * 6, None, 6)
    cache.put("a", b"z" * 4)  # a new value for a key: its old size is given back
    assert cache.size == 4
    empty: SharedLRU[str, int] = SharedLRU(0)
    empty.put("a", 1)
    assert empty.get("a") is None
