"""What reading and writing the state costs in memory: the checkpoint of a data directory, read back and pickled.

    idres ingest events.jsonl --data-dir /tmp/d       # any data directory with a checkpoint
    python benchmarks/checkpoint_memory.py /tmp/d

Each figure is taken in a process of its own, so that its peak (``ru_maxrss``) is its own:

* ``views``: the checkpoint's views read back (what ``idres snapshot`` and ``serve`` do): seconds, the
  resident size once read and the peak while reading;
* ``state``: the resolver's state alone read back (what `idres ingest` does on opening: it folds the views after
  deciding, ``EmbeddedEngine(fold_views="after")``);
* ``whole``: the views and the resolver's state read back (what another writer does on opening);
* ``pickle-state`` and ``pickle-views``: that part pickled in memory as a Kafka worker keeps a rewind point
  (``streams.stream_app.pickled``): seconds, bytes, and how far the peak rose above what was held before;
* ``memo``: how many objects the pickler remembers writing each part as ``save_checkpoint`` does, a pickler to
  a part (its table is 16 bytes a slot, doubled once two thirds full).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _resident_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() // 1024


def _peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _load(data_dir: Path, parts: int | tuple[int, ...] | None) -> tuple:
    from streams.log import CHECKPOINTS, load_checkpoint

    with open(data_dir / CHECKPOINTS[0], "rb") as fh:
        fingerprint = pickle.Unpickler(fh).load()["fingerprint"]
    loaded = load_checkpoint(data_dir, fingerprint, 1 << 62, parts=parts)
    if loaded is None:
        sys.exit(f"idres: error: {data_dir} has no checkpoint this version reads: run `idres replay --data-dir "
                 f"{data_dir}` to write one")
    return loaded[1]


def measure(what: str, data_dir: Path) -> str:
    gc.disable()
    started = time.perf_counter()
    if what in ("views", "state", "whole"):
        loaded = _load(data_dir, {"views": 1, "state": (1,), "whole": None}[what])
        took, resident = time.perf_counter() - started, _resident_kb()
        assert loaded  # (held until measured)
        return f"{what:13s} read in {took:.1f} s, resident {resident:,} kB, peak {_peak_kb():,} kB"
    views, state = _load(data_dir, None)
    started = time.perf_counter()
    if what == "memo":
        import streams.log as log

        class Discarding:
            def write(self, data: object) -> int:
                return 0

        made: list[pickle.Pickler] = []

        class Kept(log._CheckpointPickler):  # (kept after ``dump_part``, to count what it remembered)
            def __init__(self, *args: object) -> None:
                super().__init__(*args)
                made.append(self)

        real, log._CheckpointPickler = log._CheckpointPickler, Kept  # type: ignore[misc]
        try:
            for part in (views, state):  # (each part through a pickler of its own, as the checkpoint writes it)
                log.dump_part(Discarding(), part)
        finally:
            log._CheckpointPickler = real  # type: ignore[misc]
        took = time.perf_counter() - started
        return (f"{'memo':13s} {len(made[0].memo.copy()):,} objects remembered writing the views, "
                f"{len(made[1].memo.copy()):,} writing the resolver's state ({took:.1f} s)")
    from streams.stream_app import pickled

    held, before = _peak_kb(), _resident_kb()
    started = time.perf_counter()
    data = pickled(state if what == "pickle-state" else views)
    return (f"{what:13s} {time.perf_counter() - started:.1f} s, {len(data):,} bytes, the peak "
            f"{_peak_kb() - max(held, before):,} kB above what was held")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--only", choices=("views", "state", "whole", "pickle-state", "pickle-views", "memo"), default=None)
    args = parser.parse_args()
    if args.only:
        print(measure(args.only, args.data_dir), flush=True)
        return
    from streams.log import CHECKPOINTS

    if not (args.data_dir / CHECKPOINTS[0]).is_file():
        sys.exit(f"idres: error: {args.data_dir} holds no checkpoint: give the data directory of an `idres ingest`")
    for what in ("views", "state", "whole", "pickle-state", "pickle-views", "memo"):
        done = subprocess.run([sys.executable, __file__, str(args.data_dir), "--only", what])
        if done.returncode:
            sys.exit(done.returncode)


if __name__ == "__main__":
    main()
