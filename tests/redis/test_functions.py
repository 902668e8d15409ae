"""The functions library: assembly, loading, version checks, FCALL / FCALL_RO, the direct path."""

from __future__ import annotations

import asyncio
import gc
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from redis.client import Redis
from redis.exceptions import NoPermissionError

from platformdb.errors import PlatformDBError, ValidationError
from platformdb.redis import (
    AsyncRateLimiter,
    Cache,
    FunctionsNotLoaded,
    Limit,
    RateLimiter,
    connect,
    connect_async,
    functions,
    library,
)
from platformdb.redis._fcall import fcall
from platformdb.redis.functions import read_library, scripts_dir

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {
    "ratelimit_allow",
    "session_create", "session_touch", "session_get", "session_revoke", "session_revoke_all",
    "session_list",
    "cache_get", "cache_get_or_lock", "cache_set", "cache_unlock", "cache_delete",
    "cache_invalidate_tags", "cache_delete_prefix",
    "queue_enqueue", "queue_claim", "queue_ack", "queue_retry", "queue_extend", "queue_release",
    "queue_cancel", "queue_redrive", "queue_purge_org",
}
READ_ONLY = {"cache_get", "session_get", "session_list"}


def test_the_library_is_assembled_from_one_file_per_function() -> None:
    lib = library()
    assert scripts_dir() == REPO / "redis" / "scripts"
    assert set(lib.functions) == EXPECTED
    assert {f.name for f in lib.functions.values() if f.readonly} == READ_ONLY
    assert lib.code.startswith("#!lua name=platformdb\n")
    assert f"local LIBRARY_VERSION = {lib.version}\n" in lib.code
    for function in lib.functions.values():
        assert function.server_name == f"platformdb_{function.name}"
        assert f"local function {function.name}(KEYS, ARGV)\n" in lib.code
        header = function.body.split("\n\n", 1)[0]
        assert header.startswith(f"-- function: {function.name}\n")
        assert "-- returns:" in header and "KEYS[1" in header


def test_the_library_version_is_bumped_whenever_its_code_changes() -> None:
    lib = library()
    lines = [line.split() for line in (scripts_dir() / "library.sum").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    versions = [int(version) for version, _ in lines]
    assert len(versions) == len(set(versions)), "one line per version in library.sum"
    recorded = dict((int(v), c) for v, c in lines)
    assert recorded.get(lib.version) == lib.checksum, (
        f"redis/scripts changed: bump the version in library.lua and add "
        f"'{lib.version if lib.version not in recorded else max(recorded) + 1} {lib.checksum}'"
        " to library.sum (a new version's checksum changes with the version line)")


def test_bad_function_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PlatformDBError, match=r"library\.lua"):
        read_library(tmp_path)
    shutil.copy(scripts_dir() / "library.lua", tmp_path)
    with pytest.raises(PlatformDBError, match="no function files"):
        read_library(tmp_path)
    (tmp_path / "x.lua").write_text("-- function: y\nreturn 1\n")
    with pytest.raises(PlatformDBError, match="function: x"):
        read_library(tmp_path)
    (tmp_path / "x.lua").write_text("-- function: x\n-- flags: no-reads\nreturn 1\n")
    with pytest.raises(PlatformDBError, match="unknown flags"):
        read_library(tmp_path)
    (tmp_path / "x.lua").write_text("-- function: x\n-- flags: no-writes\nreturn 1\n")
    assert read_library(tmp_path).functions["x"].readonly
    with pytest.raises(PlatformDBError, match="no function 'nope'"):
        library()["nope"]


def test_the_library_loads_on_each_server_kind_and_says_what_it_holds(scratch: Redis) -> None:
    assert functions.on_server(scratch)[0].checksum is None
    functions.load(scratch)
    [node] = functions.on_server(scratch)
    assert (node.checksum, node.version) == (library().checksum, library().version)
    functions.load(scratch)  # REPLACE: loading again is harmless
    assert len(scratch.function_list()) == 1


def test_a_call_without_the_library_raises_functions_not_loaded(scratch: Redis) -> None:
    limiter = RateLimiter(scratch, Limit(5, 10))
    with pytest.raises(FunctionsNotLoaded) as caught:
        limiter.allow("org_1", "dv360")
    assert caught.value.loaded is None and caught.value.needed == library().version
    assert str(caught.value) == "Redis functions library 'platformdb' not loaded"
    with pytest.raises(FunctionsNotLoaded):
        limiter.allow_many([("org_1", "dv360")] * 3)
    with pytest.raises(FunctionsNotLoaded):  # FCALL_RO too
        Cache(scratch, "campaign").get("1", org_id="org_1")
    assert scratch.dbsize() == 0


def test_an_older_library_refuses_the_call_and_names_both_versions(
    scratch: Redis, tmp_path: Path
) -> None:
    folder = tmp_path / "scripts"
    shutil.copytree(scripts_dir(), folder)
    preamble = folder / "library.lua"
    preamble.write_text(preamble.read_text().replace(
        f"-- version: {library().version}\n", "-- version: 0\n"))
    functions.load(scratch, read_library(folder).code)
    limiter = RateLimiter(scratch, Limit(5, 10))
    with pytest.raises(FunctionsNotLoaded, match=f"version 0 < {library().version}") as caught:
        limiter.allow("org_1", "dv360")
    assert caught.value.loaded == 0
    assert scratch.dbsize() == 0  # refused before the body ran
    functions.load(scratch)
    assert limiter.allow("org_1", "dv360").allowed


def test_an_async_call_without_the_library_raises_functions_not_loaded(scratch_url: str,
                                                                       scratch: Redis) -> None:
    async def main() -> None:
        client = connect_async(scratch_url)
        try:
            await AsyncRateLimiter(client, Limit(1, 1)).allow("org_1", "dv360")
        finally:
            await client.aclose()

    with pytest.raises(FunctionsNotLoaded):
        asyncio.run(main())


def test_bad_arguments_are_validation_errors_and_write_nothing(
    redis_client: Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}ratelimit:{{org_1}}:{{dv360}}"
    for args in ([0, 1000, "r"], [5, 0, "r"], ["abc", 1000, "r"], [1.5, 1000, "r"]):
        with pytest.raises(ValidationError, match="ratelimit_allow"):
            fcall(redis_client, library()["ratelimit_allow"], [key], args)
    assert redis_client.exists(key) == 0


def test_read_only_functions_go_by_fcall_ro(scratch_url: str, scratch: Redis) -> None:
    functions.load(scratch)
    scratch.acl_setuser("reader", enabled=True, passwords=["+pw"], keys=["cache:*", "cacheidx:*"],
                        commands=["+@connection", "+fcall_ro", "+get", "+pttl", "+time"])
    writer = Cache(scratch, "campaign")
    writer.set("1", {"v": 1}, org_id="org_1")
    reader_client = connect(scratch_url.replace("redis://", "redis://reader:pw@"))
    try:
        reader = Cache(reader_client, "campaign")
        assert reader.get("1", org_id="org_1") == {"v": 1}  # FCALL_RO: allowed
        with pytest.raises(PlatformDBError, match="ACL"):
            reader.set("2", {"v": 2}, org_id="org_1")  # FCALL: refused
        with pytest.raises(NoPermissionError):
            reader_client.fcall("platformdb_cache_get", 1, "cache:{org_1:campaign}:1", 0, 1)
    finally:
        reader_client.close()


def test_a_dropped_connection_is_replaced_transparently(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    client = connect(redis_url)
    limiter = RateLimiter(client, Limit(10, 10), prefix=redis_prefix)
    try:
        assert limiter.allow("org_1", "dv360").remaining == 9
        for victim in [c["id"] for c in redis_client.client_list()
                       if c["id"] != str(redis_client.client_id())]:
            redis_client.client_kill_filter(_id=victim)
        assert limiter.allow("org_1", "dv360").remaining == 8
        for victim in [c["id"] for c in redis_client.client_list()
                       if c["id"] != str(redis_client.client_id())]:
            redis_client.client_kill_filter(_id=victim)
        assert [d.remaining for d in limiter.allow_many([("org_1", "dv360")] * 2)] == [7, 6]
    finally:
        client.close()


def test_the_direct_path_stays_within_the_pool_and_gives_connections_back(
    redis_url: str, redis_client: Redis, redis_prefix: str
) -> None:
    name = f"pdb-{redis_prefix.rstrip(':')}"
    client = connect(redis_url, max_connections=4, client_name=name)
    assert isinstance(client, Redis)
    limiter = RateLimiter(client, Limit(1000, 10), prefix=redis_prefix)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []
    seen: list[int] = []

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            for _ in range(50):
                assert limiter.allow("org_1", "dv360").allowed
            seen.append(sum(1 for c in redis_client.client_list() if c["name"] == name))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert max(seen) <= 4  # pinned connections come out of the pool, never beside it
    pool = client.connection_pool
    del threads
    gc.collect()
    assert len(pool._in_use_connections) == 0  # the threads ended: their pins went back
    assert limiter.allow("org_1", "dv360").allowed
    client.close()


@pytest.mark.slow
def test_the_cli_turns_functions_not_loaded_into_one_line_of_advice() -> None:
    probe = (
        "import sys\n"
        "from platformdb import cli\n"
        "from platformdb.redis import FunctionsNotLoaded\n"
        "@cli.app.command('probe')\n"
        "def probe() -> None:\n"
        "    raise FunctionsNotLoaded(1, 2)\n"
        "sys.argv = ['platformdb', 'probe']\n"
        "cli.main()\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: Redis functions library 'platformdb' version 1 < 2: run `platformdb migrate up`")
