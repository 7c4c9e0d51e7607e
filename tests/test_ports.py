"""The test servers' ports stay out of the range outgoing connections take theirs from (``tests/ports.py``)."""
import socket

from tests.ports import _ephemeral_low, free_port


def test_ports_come_from_below_the_ephemeral_range_and_differ_until_bound():
    low = _ephemeral_low()
    ports = [free_port() for _ in range(20)]
    assert all(p < low for p in ports), (low, ports)
    assert len(set(ports)) == len(ports)


def test_a_bound_port_is_passed_over():
    port = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", port + 1))
        held.listen()
        after = free_port()
    assert after != port + 1 and after < _ephemeral_low()


def test_an_outgoing_connection_never_takes_a_port_it_hands_out():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        clients = [socket.create_connection(server.getsockname()) for _ in range(50)]
        try:
            local = {c.getsockname()[1] for c in clients}
        finally:
            for c in clients:
                c.close()
    assert min(local) >= _ephemeral_low() > free_port()
