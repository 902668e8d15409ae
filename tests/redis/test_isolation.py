"""Tenant isolation: one org's keys can't be read or changed through another org's calls."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.client import Redis

from platformdb.errors import ValidationError
from platformdb.redis import EventBus, JobQueue, KeySpace, Limit, RateLimiter, connect
from platformdb.redis.keys import hash_tag
from tests.redis.helpers import wait_until

VALID = st.text(alphabet=string.ascii_letters + string.digits + "._@+=-", min_size=1, max_size=20)
ANY = st.text(min_size=0, max_size=20)


@settings(max_examples=300, deadline=None)
@given(a=st.tuples(VALID, VALID), b=st.tuples(VALID, VALID), prefix=st.sampled_from(["", "p:"]))
def test_distinct_org_and_dsp_never_share_a_key(
    a: tuple[str, str], b: tuple[str, str], prefix: str
) -> None:
    keys = KeySpace(prefix)
    if a != b:
        assert keys.ratelimit(*a) != keys.ratelimit(*b)
    if a[0] != b[0]:
        assert keys.events(a[0]) != keys.events(b[0])
        assert keys.session_index(a[0]) != keys.session_index(b[0])
    assert hash_tag(keys.ratelimit(*a)) == a[0]


@settings(max_examples=300, deadline=None)
@given(org=ANY)
def test_an_accepted_org_id_cannot_escape_its_hash_tag(org: str) -> None:
    try:
        key = KeySpace().ratelimit(org, "dv360")
    except ValidationError:
        return
    assert not any(c in org for c in ":{}*?[]\\") and not any(c.isspace() for c in org)
    assert key == f"ratelimit:{{{org}}}:{{dv360}}"
    assert hash_tag(key) == org


def test_one_orgs_rate_limit_does_not_touch_another(redis_client: Redis, redis_prefix: str) -> None:
    limiter = RateLimiter(redis_client, Limit(3, 30), prefix=redis_prefix)
    assert sum(limiter.allow("org_a", "dv360").allowed for _ in range(10)) == 3
    assert limiter.allow("org_b", "dv360").remaining == 2
    assert limiter.allow("org_a", "ttd").remaining == 2
    # ids that could alias another org's key are refused, not mapped
    for org, dsp in [("org_a:dv360", "x"), ("org_a}", "dv360"), ("org_*", "dv360")]:
        with pytest.raises(ValidationError):
            limiter.allow(org, dsp)
    limiter.reset("org_b", "dv360")
    assert not limiter.allow("org_a", "dv360").allowed


def test_one_orgs_events_do_not_reach_another(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    listener = connect(redis_url)
    bus = EventBus(redis_client, prefix=redis_prefix)
    with EventBus(listener, prefix=redis_prefix).subscribe("org_b") as sub:
        channel = f"{redis_prefix}events:{{org_b}}"
        assert wait_until(
            lambda: dict(redis_client.pubsub_numsub(channel)).get(channel) == 1, timeout=5
        )
        bus.publish("org_a", "campaign.updated", {"secret": 1})
        assert sub.get(timeout=0.3) is None
        bus.publish("org_b", "campaign.updated", {"mine": 1})
        event = sub.get(timeout=2)
        assert event is not None and event.data == {"mine": 1}
    listener.close()


def test_one_orgs_jobs_cannot_be_read_or_changed_by_another(
    redis_client: Redis, redis_prefix: str
) -> None:
    queue = JobQueue(redis_client, "etl", max_attempts=1, prefix=redis_prefix)
    ready = queue.enqueue({"campaign": "secret"}, org_id="org_a")
    dead = queue.enqueue({"campaign": "failed"}, org_id="org_a")
    job = next(j for j in queue.claim(count=2) if j.id == dead)
    assert queue.retry(job, "boom") == "dead"

    assert queue.get(ready, org_id="org_b") is None
    assert queue.cancel(ready, org_id="org_b") is False
    assert queue.redrive(dead, org_id="org_b") is False
    assert queue.dead_letters(org_id="org_b") == []

    assert queue.get(dead, org_id="org_a") is not None
    assert [d.id for d in queue.dead_letters(org_id="org_a")] == [dead]
