"""Per-org events over pub/sub."""

from __future__ import annotations

import asyncio

from redis.client import Redis

from platformdb.redis import AsyncEventBus, EventBus, connect, connect_async
from tests.redis.helpers import wait_until


def test_events_reach_subscribers_of_their_org_only(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    bus = EventBus(redis_client, prefix=redis_prefix)
    listeners = {org: connect(redis_url) for org in ("org_1", "org_2", "org_10")}
    subs = {org: EventBus(c, prefix=redis_prefix).subscribe(org).start()
            for org, c in listeners.items()}
    try:
        channel = f"{redis_prefix}events:{{org_1}}"
        assert wait_until(
            lambda: dict(redis_client.pubsub_numsub(channel)).get(channel) == 1, timeout=5
        )
        sent = [bus.publish("org_1", "campaign.updated", {"campaign_id": str(i)}) for i in range(3)]
        bus.publish("org_2", "campaign.paused", {"campaign_id": "x"})

        got = [subs["org_1"].get(timeout=2) for _ in range(3)]
        assert [e.id for e in got if e] == [e.id for e in sent]
        assert all(e and e.org_id == "org_1" and e.type == "campaign.updated" for e in got)
        assert got[0] and got[0].data == {"campaign_id": "0"}
        assert subs["org_1"].get(timeout=0.2) is None

        other = subs["org_2"].get(timeout=2)
        assert other is not None and other.data == {"campaign_id": "x"}
        assert subs["org_2"].get(timeout=0.2) is None
        assert subs["org_10"].get(timeout=0.2) is None
    finally:
        for sub in subs.values():
            sub.close()
        for client in listeners.values():
            client.close()


def test_a_message_naming_another_org_is_dropped(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    listener = connect(redis_url)
    with EventBus(listener, prefix=redis_prefix).subscribe("org_1") as sub:
        channel = f"{redis_prefix}events:{{org_1}}"
        assert wait_until(
            lambda: dict(redis_client.pubsub_numsub(channel)).get(channel) == 1, timeout=5
        )
        redis_client.publish(
            channel,
            '{"id":"1","org_id":"org_2","type":"x","data":null,'
            '"published_at":"2026-01-06T00:00:00+00:00"}',
        )
        redis_client.publish(channel, "not json")
        assert sub.get(timeout=0.3) is None
    listener.close()


def test_async_bus(redis_url: str, redis_prefix: str) -> None:
    async def main() -> list[object]:
        client = connect_async(redis_url)
        bus = AsyncEventBus(client, prefix=redis_prefix)
        try:
            async with bus.subscribe("org_1") as sub1, bus.subscribe("org_2") as sub2:
                await bus.publish("org_1", "etl.finished", {"rows": 10})
                first = await sub1.get(timeout=2)
                nothing = await sub2.get(timeout=0.2)
        finally:
            await client.aclose()
        return [first.data if first else None, nothing]

    assert asyncio.run(main()) == [{"rows": 10}, None]
