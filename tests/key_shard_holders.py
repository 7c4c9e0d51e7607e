"""Key shard holders in worker processes of their own, on fresh topics of a broker: for the tests and for
``benchmarks/key_shards.py --kafka`` (``streams.kafka_key_shards``)."""

from __future__ import annotations

import multiprocessing
import os
import time

from resolver.config import ResolverConfig
from streams.kafka_io import KafkaSettings
from streams.kafka_key_shards import create_topics, serve
from tests.kafka_broker import unique_name


def _hold(bootstrap: str, prefix: str, stop_file: str) -> None:
    from pathlib import Path

    from streams.kafka_key_shards import KeyShardHolder
    from tests.kafka_broker import cap_key_shard_wait

    cap_key_shard_wait()  # (a process of its own: spawned)
    settings = KafkaSettings(bootstrap=bootstrap, prefix=prefix)
    held = Path(f"{stop_file}.held-{os.getpid()}")  # (how many shards the group gives this holder)
    holder = KeyShardHolder(ResolverConfig(), assigned=lambda n: held.write_text(str(n)))
    try:
        serve(settings, ResolverConfig(), stopped=lambda: os.path.exists(stop_file), session_timeout_ms=6000,
              holder=holder)
    except BaseException:
        import traceback

        Path(f"{stop_file}.failed-{os.getpid()}").write_text(traceback.format_exc())
        raise


def _holders(bootstrap, prefix, count, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    stop = str(tmp_path / "stop")
    procs = [ctx.Process(target=_hold, args=(bootstrap, prefix, stop), daemon=True) for _ in range(count)]
    for p in procs:
        p.start()
    return procs, stop


def deployment(bootstrap, tmp_path, label: str, shards: int, holders: int = 2):
    """Fresh topics for ``shards`` key shards, and ``holders`` worker processes serving them."""
    prefix = unique_name(label) + "."
    settings = KafkaSettings(bootstrap=bootstrap, prefix=prefix)
    create_topics(settings, shards)
    procs, stop = _holders(bootstrap, prefix, holders, tmp_path)
    # until the group gave every holder a shard (a session loaded before would find a shard moved)
    deadline = time.monotonic() + 90
    while True:
        held = [int(p.read_text() or 0) for p in tmp_path.glob("stop.held-*")]
        if len(held) == holders and all(held) and sum(held) == shards:
            return settings, procs, stop
        if time.monotonic() > deadline:
            stop_holders(procs, stop)
            raise RuntimeError(f"the holders' group did not settle: {held}")
        time.sleep(0.2)


def stop_holders(procs, stop) -> None:
    open(stop, "w").close()
    for p in procs:
        p.join(15)
        if p.is_alive():
            p.kill()
            p.join(5)
