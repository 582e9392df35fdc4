"""Backoff delays and the chained-poll waiting helpers."""

from __future__ import annotations

import asyncio
import random

import pytest

from x402console.sources.backoff import Backoff, ReplicaChains, sleep_or_stop, unless_stopped
from x402console.sources.models import ReplicaIdentity


def test_doubles_from_one_second_up_to_thirty_without_jitter():
    b = Backoff(jitter=0)
    assert [b.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert b.failures == 8


def test_reset_starts_again_at_the_initial_delay():
    b = Backoff(jitter=0)
    for _ in range(4):
        b.next_delay()
    b.reset()
    assert b.failures == 0
    assert b.next_delay() == 1


def test_jitter_stays_within_its_band_and_never_exceeds_the_maximum():
    b = Backoff(jitter=0.1, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(200)]
    assert 0.9 <= delays[0] <= 1.1
    assert 1.8 <= delays[1] <= 2.2
    assert all(d <= 30.0 for d in delays)
    assert all(d >= 27.0 for d in delays[10:])
    # jitter really varies the delays (two consoles do not poll in step)
    assert len(set(delays[10:])) > 1


def test_same_rng_seed_gives_the_same_delays():
    a = Backoff(rng=random.Random(3))
    b = Backoff(rng=random.Random(3))
    assert [a.next_delay() for _ in range(6)] == [b.next_delay() for _ in range(6)]


def test_a_long_outage_does_not_overflow():
    b = Backoff(jitter=0)
    for _ in range(5000):
        d = b.next_delay()
    assert d == 30.0


@pytest.mark.parametrize(
    "kw", [dict(initial=0), dict(factor=0.5), dict(initial=5, maximum=1), dict(jitter=1.0), dict(jitter=-0.1)]
)
def test_bad_parameters_are_refused(kw):
    with pytest.raises(ValueError):
        Backoff(**kw)


async def test_sleep_or_stop_returns_early_when_stopped():
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await asyncio.wait_for(sleep_or_stop(stop, 30), timeout=5) is True


async def test_sleep_or_stop_times_out_when_not_stopped():
    stop = asyncio.Event()
    assert await sleep_or_stop(stop, 0.01) is False


async def test_unless_stopped_abandons_a_stuck_poll_and_cancels_it():
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_later(0.05, stop.set)
    finished, result = await asyncio.wait_for(unless_stopped(stop, stuck), timeout=5)
    assert (finished, result) == (False, None)
    assert cancelled.is_set()


async def test_unless_stopped_returns_the_result_of_a_finished_poll():
    stop = asyncio.Event()

    async def quick():
        return 42

    assert await unless_stopped(stop, quick) == (True, 42)


def _replica(name: str, port: int) -> ReplicaIdentity:
    return ReplicaIdentity(name, "url", f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}/metrics")


async def test_replica_chains_follow_the_replica_list():
    stop = asyncio.Event()
    running: set[str] = set()
    removed: list[str] = []

    async def chain(replica, stop):
        running.add(replica.health_url)
        try:
            await stop.wait()
        finally:
            running.discard(replica.health_url)

    chains = ReplicaChains(chain, on_removed=lambda r: removed.append(r.name))
    chains.reconcile([_replica("a", 1), _replica("b", 2)], stop)
    await asyncio.sleep(0.01)
    assert running == {"http://127.0.0.1:1/health", "http://127.0.0.1:2/health"}
    # b moved to another port (a recreated container): its old chain ends, a new one starts
    chains.reconcile([_replica("a", 1), _replica("b", 3)], stop)
    await asyncio.sleep(0.01)
    assert running == {"http://127.0.0.1:1/health", "http://127.0.0.1:3/health"}
    assert removed == ["b"]
    chains.reconcile([], stop)
    await asyncio.sleep(0.01)
    assert running == set() and len(chains) == 0
    chains.reconcile([_replica("c", 4)], stop)
    await chains.close()
    assert running == set()
