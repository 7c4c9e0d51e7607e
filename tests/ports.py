"""Loopback ports for the servers the tests start (brokers, workers' web endpoints, the lookup API).

A port the kernel hands out with ``bind(("127.0.0.1", 0))`` comes from the ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``, 32768-60999 here), the same range every outgoing connection
takes its local port from. Between the test letting such a port go and the server binding it, any Kafka
client on the machine may connect from it, and the server fails with "address already in use". A clean-clone
run met it once in about thirty: a shard worker's web endpoint on 127.0.0.1:52513.

So the ports come from below that range, which outgoing connections never use; each pytest-xdist worker
takes its own slice of it, and within a process one after the other (two servers a test starts before either
binds never get the same port). A port found bound is passed over.
"""
from __future__ import annotations

import itertools
import os
import random
import socket

_FLOOR = 20000  # below it: ports services on a developer's machine often use


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; other systems start higher


def _slice() -> range:
    low = max(_ephemeral_low(), _FLOOR + 1000)
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0
    width = (low - _FLOOR) // max(count, 1)
    start = _FLOOR + (index % max(count, 1)) * width
    return range(start, start + width)


_PORTS = _slice()
_NEXT = itertools.count(random.SystemRandom().randrange(len(_PORTS)))


def bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on, outside the ephemeral range."""
    for _ in range(len(_PORTS)):
        port = _PORTS[next(_NEXT) % len(_PORTS)]
        if bindable(port):
            return port
    raise RuntimeError(f"no free loopback port in {_PORTS.start}-{_PORTS.stop - 1}")
