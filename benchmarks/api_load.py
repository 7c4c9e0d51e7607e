"""Lookup API under load while ingestion runs: latency of `GET /v1/lookup` at a steady request rate.

    python benchmarks/api_load.py                          # ~110,000 profiles, 1,000 lookups/s for 20 s
    python benchmarks/api_load.py --people 5000 --duration 5 --ingest-people 2000   # quicker
    python benchmarks/api_load.py --workdir /tmp/api-load --reuse                   # keep and reuse the data

Steps: generate a synthetic data set and ingest it (`idres ingest`), sample identifiers that resolve
to a customer from the resulting views, start `idres serve` on a free loopback port and wait for
/readyz, start a concurrent `idres ingest` of a second file into the same data directory, and from a
separate process send lookups open-loop (each request is sent at its scheduled time, whether or not
earlier ones have answered) with asyncio + httpx. Latency is measured from the scheduled send time,
so a stalled server is not hidden by a client that waits for it. Prints the rate achieved, latency
percentiles, error counts and the follower's lag while the ingestion ran. All traffic is to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def idres(*args: str, nice: int = 0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streams.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 2.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def machine_cpu() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot (Linux)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def process_cpu(pid: int) -> float:
    """Seconds of CPU a process has used (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


# ------------------------------------------------------------------------------------------ client
class RawConnection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a few tens of microseconds of client CPU per
    request (an httpx client costs about a millisecond, and at 1,000 requests/s on a two-core machine
    that would measure the client, not the server)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> "RawConnection":
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def get(self, target: str, host: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise ValueError("response without content-length")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def run_client(base: str, ids: list[tuple[str, str]], rate: float, duration: float,
                     connections: int, seed: int, library: str = "raw") -> dict:
    from urllib.parse import urlencode, urlsplit

    rng = random.Random(seed)
    total = int(rate * duration)
    latencies: list[float] = []
    service: list[float] = []
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    url = urlsplit(base)
    host, port = url.hostname, url.port
    loop = asyncio.get_running_loop()
    httpx_client = None
    pool: asyncio.Queue = asyncio.Queue()
    if library == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        httpx_client = httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0)
        await asyncio.gather(*(httpx_client.get("/healthz") for _ in range(min(connections, 32))))
    else:
        for conn in await asyncio.gather(*(RawConnection.open(host, port) for _ in range(connections))):
            pool.put_nowait(conn)  # FIFO: every connection is used in turn and stays warm

    async def one(scheduled: float, target: str) -> None:
        try:
            if httpx_client is not None:
                sent = loop.time()
                resp = await httpx_client.get(target)
                status = resp.status_code
            else:
                conn = await pool.get()  # waiting for a free connection counts in the latency
                sent = loop.time()
                try:
                    status, _ = await conn.get(target, f"{host}:{port}")
                except Exception:
                    conn.close()
                    pool.put_nowait(await RawConnection.open(host, port))
                    raise
                pool.put_nowait(conn)
        except Exception as exc:  # counted, never fatal
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        done = loop.time()
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        latencies.append(done - scheduled)
        service.append(done - sent)

    start = loop.time() + 0.05
    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        id_type, value = ids[rng.randrange(len(ids))]
        target = "/v1/lookup?" + urlencode({"type": id_type, "value": value, "timeline": 5})
        tasks.append(asyncio.create_task(one(scheduled, target)))
    sent_done = loop.time()
    await asyncio.gather(*tasks)
    finished = loop.time()
    if httpx_client is not None:
        await httpx_client.aclose()
    while not pool.empty():
        pool.get_nowait().close()
    latencies.sort()
    service.sort()
    ms = lambda v: round(v * 1000, 2)  # noqa: E731
    return {
        "client": library,
        "client_cpu_seconds": round(time.process_time(), 2),
        "requests": total,
        "completed": len(latencies),
        "seconds": round(finished - start, 2),
        "send_seconds": round(sent_done - start, 2),
        "requests_per_second": round(len(latencies) / (finished - start), 1),
        "statuses": statuses,
        "errors": errors,
        "latency_ms": {"p50": ms(percentile(latencies, 50)), "p90": ms(percentile(latencies, 90)),
                       "p99": ms(percentile(latencies, 99)), "p99.9": ms(percentile(latencies, 99.9)),
                       "max": ms(latencies[-1]) if latencies else None},
        "service_time_ms": {"p50": ms(percentile(service, 50)), "p99": ms(percentile(service, 99)),
                            "max": ms(service[-1]) if service else None},
    }


def client_main(args: argparse.Namespace) -> None:
    ids = [tuple(line.split("\t", 1)) for line in Path(args.ids).read_text().splitlines() if "\t" in line]
    result = asyncio.run(run_client(args.base, ids, args.rate, args.duration, args.connections, args.seed,
                                    args.http_client))
    print(json.dumps(result))


# ------------------------------------------------------------------------------------------ driver
def build(work: Path, people: int, ingest_people: int, seed: int, reuse: bool) -> tuple[Path, Path]:
    from streams.synthetic import SyntheticConfig, write_dataset

    base_events, more_events = work / "events.jsonl", work / "more-events.jsonl"
    data = work / "base-data"
    if not (reuse and base_events.exists()):
        t = time.perf_counter()
        stats = write_dataset(base_events, work / "truth.csv", SyntheticConfig(people=people, seed=seed))
        print(f"generated {stats['events']:,} events of {people:,} people in {time.perf_counter() - t:.1f} s")
    if not (reuse and more_events.exists()):
        write_dataset(more_events, work / "more-truth.csv",
                      SyntheticConfig(people=ingest_people, seed=seed + 1, start="2026-01-01T00:00:00+00:00"))
    if not (reuse and (data / "log").is_dir()):
        shutil.rmtree(data, ignore_errors=True)
        t = time.perf_counter()
        proc = idres("ingest", str(base_events), "--data-dir", str(data))
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"ingest failed: {err.strip()}")
        print(f"ingested the base data set in {time.perf_counter() - t:.1f} s")
    else:
        print(f"reusing {data}")
    return data, more_events


def sample_identifiers(data: Path, n: int, seed: int) -> tuple[list[tuple[str, str]], dict]:
    from streams.embedded import EmbeddedEngine

    with EmbeddedEngine(data, writer=False) as engine:
        views = engine.views
        stats = views.stats()
        keys = [k for k in views.node_keys if k.split(":", 1)[0] in ("email", "phone", "loyalty_id", "device_id")]
        rng = random.Random(seed)
        rng.shuffle(keys)
        out = []
        for key in keys:
            if views.lookup_node(key)["status"] == "found":
                out.append(tuple(key.split(":", 1)))
                if len(out) >= n:
                    break
    return out, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=60_000, help="people in the base data set (~1.9 profiles each)")
    parser.add_argument("--ingest-people", type=int, default=50_000,
                        help="people in the file ingested while the load runs")
    parser.add_argument("--rate", type=float, default=1000.0, help="lookups per second (default 1000)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    parser.add_argument("--connections", type=int, default=32, help="client keep-alive connections (default 32)")
    parser.add_argument("--http-client", choices=("raw", "httpx"), default="raw",
                        help="raw: keep-alive HTTP/1.1 on asyncio streams (default); httpx: httpx.AsyncClient, "
                             "whose own CPU cost per request dominates at this rate on a small machine")
    parser.add_argument("--ingest-nice", type=int, default=0,
                        help="run the concurrent ingest at this nice level (default 0: same priority as the server)")
    parser.add_argument("--no-ingest", action="store_true", help="no concurrent ingest: lookups alone (a baseline)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workdir", help="where to keep the data (default: a temporary directory, removed)")
    parser.add_argument("--reuse", action="store_true", help="reuse the data sets in --workdir")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="idres-api-load-"))
    work.mkdir(parents=True, exist_ok=True)
    data, more_events = build(work, args.people, args.ingest_people, args.seed, args.reuse)
    # serve and ingest into a copy, so that the base data stays as it is for --reuse
    run_data = work / "run-data"
    shutil.rmtree(run_data, ignore_errors=True)
    shutil.copytree(data, run_data, ignore=shutil.ignore_patterns("LOCK"))
    data = run_data
    ids, stats = sample_identifiers(data, 20_000, args.seed)
    ids_file = work / "ids.tsv"
    ids_file.write_text("".join(f"{t}\t{v}\n" for t, v in ids))
    print(f"profiles loaded: {stats['profiles']:,} ({stats['events']:,} events, "
          f"{stats['identifiers']:,} identifiers); sampled {len(ids):,} identifiers that resolve")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "IDRES_API_KEY"}
    t = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--port", str(port),
                               "--data-dir", str(data)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ingest = None
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"the server exited: {server.stderr.read().strip()}")
            try:
                if get_json(base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() - t > 300:
                raise SystemExit("the server was not ready within 300 s")
            time.sleep(0.1)
        print(f"server ready in {time.perf_counter() - t:.1f} s on {base}")

        lags: list[tuple[float, int]] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.5):
                try:
                    lags.append((time.perf_counter(), get_json(base + "/readyz")[1].get("lag_entries", -1)))
                except OSError:
                    pass

        log_before = get_json(base + "/readyz")[1]["log_entries"]
        ingest_started = time.perf_counter()
        writing_after = 0.0
        if not args.no_ingest:
            ingest = idres("ingest", str(more_events), "--data-dir", str(data), nice=args.ingest_nice)
            while get_json(base + "/readyz")[1]["log_entries"] == log_before:  # until it appends (after start-up)
                if ingest.poll() is not None:
                    raise SystemExit(f"the concurrent ingest exited early: {ingest.communicate()[1].strip()}")
                time.sleep(0.05)
            writing_after = time.perf_counter() - ingest_started
            ingest_cpu_before = process_cpu(ingest.pid)
        server_cpu_before = process_cpu(server.pid)
        machine_before = machine_cpu()
        window_start = time.perf_counter()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        print(f"{'no ingest' if args.no_ingest else f'concurrent ingest of {more_events.name}'} running; "
              f"sending {args.rate:g} lookups/s for {args.duration:g} s ...")
        client = subprocess.run([sys.executable, __file__, "--client", "--base", base, "--ids", str(ids_file),
                                 "--rate", str(args.rate), "--duration", str(args.duration),
                                 "--connections", str(args.connections), "--seed", str(args.seed),
                                 "--http-client", args.http_client],
                                capture_output=True, text=True)
        client_end = time.perf_counter()
        machine_after = machine_cpu()
        server_cpu = process_cpu(server.pid) - server_cpu_before
        ingest_cpu = None
        if ingest is not None and ingest.poll() is None:
            ingest_cpu = process_cpu(ingest.pid) - ingest_cpu_before
        if client.returncode != 0:
            raise SystemExit(f"the load client failed: {client.stderr.strip()}")
        result = json.loads(client.stdout)
        window = client_end - window_start  # CPU shares below are over this wall time (client start-up included)
        ingest_running_at_end = ingest is not None and ingest.poll() is None
        ingested = None
        if ingest is not None:
            out, err = ingest.communicate()
            if ingest.returncode != 0:
                raise SystemExit(f"the concurrent ingest failed: {err.strip()}")
            ingested = json.loads(out)["ingested"]
        ingest_end = time.perf_counter()
        # how long the server takes to catch up with the end of the ingest
        caught_up = None
        while time.perf_counter() - ingest_end < 120:
            code, body = get_json(base + "/readyz")
            if code == 200 and body.get("lag_entries") == 0 and body.get("applied_seq") == body.get("log_entries"):
                caught_up = time.perf_counter() - ingest_end
                break
            time.sleep(0.1)
        stop.set()
        metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        rss_mib = next((int(line.split()[1]) // 1024 for line in Path(f"/proc/{server.pid}/status").read_text()
                        .splitlines() if line.startswith("VmRSS:")), None) if sys.platform == "linux" else None
    finally:
        for proc in (ingest, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    during = [lag for ts, lag in lags if ts <= client_end]
    profiles_after = next((line.split()[-1] for line in metrics.splitlines() if line.startswith("idres_profiles ")), "?")
    print()
    print(f"  lookups sent            {result['requests']:>10,}   over {result['send_seconds']} s "
          f"({args.connections} connections, open loop)")
    print(f"  completed               {result['completed']:>10,}")
    print(f"  achieved rate           {result['requests_per_second']:>10,.1f} requests/s")
    print(f"  statuses                {json.dumps(result['statuses'])}")
    print(f"  errors                  {json.dumps(result['errors']) if result['errors'] else 0}")
    lat = result["latency_ms"]
    print(f"  latency ms (from scheduled send)  p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  "
          f"p99.9 {lat['p99.9']}  max {lat['max']}")
    svc = result["service_time_ms"]
    print(f"  latency ms (from actual send)     p50 {svc['p50']}  p99 {svc['p99']}  max {svc['max']}")
    busy = (machine_after[0] - machine_before[0]) / max(1, machine_after[1] - machine_before[1])
    cores = os.cpu_count() or 1
    print(f"  CPU during the load     machine {busy * 100:.0f}% busy of {cores} cores; server "
          f"{server_cpu / window * 100:.0f}% of a core, load client "
          f"{result['client_cpu_seconds'] / window * 100:.0f}%"
          + (f", ingest {ingest_cpu / window * 100:.0f}%" if ingest_cpu is not None else ""))
    if ingested is not None:
        print(f"  concurrent ingest       {ingested['lines']:>10,} lines in {ingested['seconds']} s "
              f"({ingested['events_per_second']:,} lines/s); still running when the load ended: "
              f"{'yes' if ingest_running_at_end else 'no'} (nice {args.ingest_nice}; first append "
              f"{writing_after:.1f} s after its start, the load began then; ingest ended "
              f"{ingest_end - ingest_started:.1f} s after its start)")
        print(f"  follower lag            max {max(during) if during else 'n/a'} entries during the load; caught up "
              f"{'%.2f s' % caught_up if caught_up is not None else 'not within 120 s'} after the ingest ended")
    if profiles_after.isdigit():
        print(f"  profiles after          {int(profiles_after):,}")
    if rss_mib is not None:
        print(f"  server memory           {rss_mib:,} MiB resident at the end")


if __name__ == "__main__":
    main()
