"""Tenant isolation: every tenant key carries its org; one org's calls never reach another's."""

from __future__ import annotations

import fnmatch
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.client import Redis

from platformdb.errors import ValidationError
from platformdb.redis import EventBus, JobQueue, KeySpace, Limit, RateLimiter, connect
from platformdb.redis.keys import hash_tag
from tests.redis.helpers import wait_until

VALID = st.text(alphabet=string.ascii_letters + string.digits + "._@+=-", min_size=1, max_size=20)
TOKEN = st.text(alphabet=string.ascii_letters + string.digits + "._@+=:-", min_size=1,
                max_size=20)
ANY = st.text(min_size=0, max_size=20)


@settings(max_examples=300, deadline=None)
@given(a=st.tuples(VALID, VALID), b=st.tuples(VALID, VALID), prefix=st.sampled_from(["", "p:"]))
def test_distinct_tenant_ids_never_share_a_key(
    a: tuple[str, str], b: tuple[str, str], prefix: str
) -> None:
    keys = KeySpace(prefix)
    if a != b:
        assert keys.ratelimit(*a) != keys.ratelimit(*b)
        assert keys.session_index(*a) != keys.session_index(*b)
        assert keys.cache_scope(*a) != keys.cache_scope(*b)
    if a[0] != b[0]:
        assert keys.events(a[0]) != keys.events(b[0])
    assert hash_tag(keys.ratelimit(*a)) == a[0]
    assert hash_tag(keys.session_index(*a)) == f"{a[0]}:{a[1]}"
    assert hash_tag(keys.cache_index(keys.cache_scope(*a))) == f"{a[0]}:{a[1]}"


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


@settings(max_examples=300, deadline=None)
@given(org=VALID, other=VALID, user=VALID, ns=VALID, job_type=VALID, job_id=TOKEN, dsp=VALID)
def test_an_orgs_scan_patterns_match_its_keys_and_no_other_orgs(
    org: str, other: str, user: str, ns: str, job_type: str, job_id: str, dsp: str
) -> None:
    keys = KeySpace("p:")
    scope = keys.cache_scope(org, ns)
    mine = [keys.session_index(org, user), keys.session(org, user, "a" * 64),
            keys.cache(scope, "k"), keys.cache_tag(scope, "t"), keys.cache_lock(scope, "k"),
            keys.cache_index(scope), keys.ratelimit(org, dsp), keys.job(job_type, org, job_id)]
    patterns = keys.org_patterns(org).values()

    def matched(key: str) -> bool:  # Redis globs: no character is special here but '*'
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)

    assert all(matched(key) for key in mine)
    if other != org:
        oscope = keys.cache_scope(other, ns)
        theirs = [keys.session_index(other, user), keys.cache(oscope, "k"),
                  keys.cache_index(oscope), keys.ratelimit(other, dsp),
                  keys.job(job_type, other, job_id)]
        assert not any(matched(key) for key in theirs)
    assert not matched(keys.cache(keys.cache_scope(None, ns), "k"))  # platform-wide
    assert not matched(keys.queue(job_type)[0])  # shared queue lists


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(org_a=VALID, org_b=VALID)
def test_one_orgs_rate_limit_never_spends_anothers(
    redis_client: Redis, redis_prefix: str, org_a: str, org_b: str
) -> None:
    if org_a == org_b:
        return
    limiter = RateLimiter(redis_client, Limit(3, 30), prefix=redis_prefix)
    assert sum(limiter.allow(org_a, "dv360").allowed for _ in range(5)) == 3
    assert limiter.allow(org_b, "dv360").remaining == 2
    limiter.reset(org_a, "dv360")
    assert limiter.allow(org_b, "dv360").remaining == 1
    limiter.reset(org_b, "dv360")


def test_ids_that_could_alias_another_orgs_key_are_refused(
    redis_client: Redis, redis_prefix: str
) -> None:
    limiter = RateLimiter(redis_client, Limit(3, 30), prefix=redis_prefix)
    for org, dsp in [("org_a:dv360", "x"), ("org_a}", "dv360"), ("org_*", "dv360")]:
        with pytest.raises(ValidationError):
            limiter.allow(org, dsp)


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


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(org_a=VALID, org_b=VALID, job_id=TOKEN)
def test_one_orgs_jobs_cannot_be_read_cancelled_or_redriven_by_another_with_the_same_id(
    redis_client: Redis, redis_prefix: str, org_a: str, org_b: str, job_id: str
) -> None:
    if org_a == org_b:
        return
    queue = JobQueue(redis_client, "etl", max_attempts=1, prefix=redis_prefix)
    # the same job id in both orgs: two jobs, neither blocks the other's enqueue
    assert queue.enqueue({"owner": org_b}, org_id=org_b, job_id=job_id) == job_id
    assert queue.enqueue({"owner": org_a}, org_id=org_a, job_id=job_id) == job_id
    assert queue.stats().ready == 2
    info = queue.get(job_id, org_id=org_a)
    assert info is not None and info.payload == {"owner": org_a}
    assert queue.cancel(job_id, org_id=org_a) is True
    assert queue.get(job_id, org_id=org_a) is None
    theirs = queue.claim()[0]
    assert (theirs.org_id, theirs.payload) == (org_b, {"owner": org_b})
    assert queue.retry(theirs, "boom") == "dead"
    assert queue.redrive(job_id, org_id=org_a) is False
    assert queue.dead_letters(org_id=org_a) == []
    assert [d.id for d in queue.dead_letters(org_id=org_b)] == [job_id]
    assert queue.cancel(job_id, org_id=org_b) is True
    assert queue.stats().dead == 0
