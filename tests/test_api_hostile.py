"""The lookup API against slow and crowding clients, and a data directory deleted under it."""

from __future__ import annotations

import json
import shutil
import socket
import time

import httpx
import pytest

from tests.cli_helpers import run_cli
from tests.test_api import Server, start_server


@pytest.fixture()
def data(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({
        "event_id": f"e{i}", "occurred_at": "2025-01-01T10:00:00Z", "channel": "web", "event_type": "visit",
        "identifiers": {"email": f"c{i}@mailbox.org"}}) + "\n" for i in range(20)))
    run_cli("ingest", str(src), "--data-dir", str(tmp_path / "data"))
    return tmp_path / "data"


def serve(data, **env) -> Server:
    return start_server(data, extra_env=env)


def lookup(server: Server) -> httpx.Response:
    return httpx.get(server.base + "/v1/lookup", params={"type": "email", "value": "c3@mailbox.org"}, timeout=5.0)


def _slow_clients(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /v1/lookup?type=email&value=c3%40mailbox.org HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        socks.append(s)
    return socks


def _closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (socket.timeout, TimeoutError):
        return False
    except ConnectionResetError:
        return True


def test_a_request_that_never_finishes_arriving_is_cut_off_and_others_are_served(data):
    server = serve(data, IDRES_API_REQUEST_TIMEOUT="1")
    try:
        slow = _slow_clients(server.port, 30)
        for s in slow:  # one byte a second keeps none of them alive beyond the deadline
            s.sendall(b"X")
        assert lookup(server).status_code == 200  # while they hang on
        started = time.monotonic()
        assert all(_closed_by_server(s, 5) for s in slow)
        assert time.monotonic() - started < 4
        assert lookup(server).status_code == 200
    finally:
        server.stop()


def test_connections_beyond_the_limit_are_refused_and_the_server_stays_up(data):
    server = serve(data, IDRES_API_REQUEST_TIMEOUT="2", IDRES_API_MAX_CONNECTIONS="8")
    try:
        crowd = _slow_clients(server.port, 40)
        closed = sum(_closed_by_server(s, 0.5) for s in crowd[8:])
        assert closed == len(crowd) - 8  # each beyond the limit is closed at once
        time.sleep(2.5)  # the eight within it run out of time
        assert lookup(server).status_code == 200
        assert server.proc.poll() is None
    finally:
        server.stop()


def test_a_data_directory_deleted_under_the_server_is_no_longer_answered_from(data):
    server = serve(data)
    try:
        assert lookup(server).status_code == 200
        shutil.rmtree(data)
        deadline = time.monotonic() + 10
        while lookup(server).status_code == 200:
            assert time.monotonic() < deadline, "still answering from a deleted data directory"
            time.sleep(0.1)
        answer = lookup(server)
        assert answer.status_code == 503
        assert answer.json()["error"] == "source_gone" and "has disappeared" in answer.json()["detail"]
        ready = httpx.get(server.base + "/readyz", timeout=5)
        assert ready.status_code == 503 and "can no longer be followed" in ready.json()["detail"]
    finally:
        server.stop()


def test_a_limit_of_one_connection_still_serves_that_one(data):
    server = serve(data, IDRES_API_MAX_CONNECTIONS="1")
    try:
        assert lookup(server).status_code == 200
    finally:
        server.stop()


def test_serve_on_a_broker_it_cannot_reach_says_so_and_keeps_trying(tmp_path):
    """`idres serve --bootstrap` on an address no broker listens on stayed up silently, answering lookups with
    "still loading" for good: it says why on its standard error and in its answers, and tries again (a broker
    that comes up after the API, as in a compose file)."""
    import os
    import subprocess
    import sys

    from tests.cli_helpers import ROOT
    from tests.kafka_broker import free_port

    port = free_port()
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "serve", "--bootstrap", "127.0.0.1:1",
                                 "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=fh,
                                env={k: v for k, v in os.environ.items() if k != "IDRES_API_KEY"})
    try:
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/v1/lookup", params={"email": "a@b.com"}, timeout=2)
            except httpx.HTTPError:
                answer = None
            if answer is not None and "cannot be loaded yet" in answer.text and err.read_text().count("warning") >= 2:
                break
            time.sleep(0.5)
        assert answer is not None and answer.status_code == 503
        assert "cannot reach a Kafka broker at 127.0.0.1:1" in answer.json()["detail"]
        lines = err.read_text().splitlines()
        assert len([line for line in lines if line.startswith("idres: warning: loading the decision log failed")]) >= 2
        assert proc.poll() is None  # (still up, trying again)
    finally:
        proc.terminate()
        proc.wait(10)


def _rss_mib(pid: int) -> float:
    from pathlib import Path

    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def _send_until_refused(s: socket.socket, piece: bytes, most: int = 64 << 20) -> int:
    """Sends ``piece`` again and again until the server takes no more (or ``most`` bytes went: all of it, had it
    taken them); the bytes sent."""
    sent = 0
    try:
        while sent < most:
            s.sendall(piece)
            sent += len(piece)
    except OSError:
        pass
    return sent


def _answer(s: socket.socket, within: float = 5.0) -> bytes:
    """What the server sent before it closed the connection (or within ``within`` seconds)."""
    s.settimeout(within)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except (socket.timeout, TimeoutError, ConnectionResetError):
        pass
    return got


@pytest.mark.parametrize("how", ["many headers", "one long header", "a long request line"])
def test_a_request_head_past_its_bound_is_refused_and_costs_the_others_nothing(data, how):
    """A request line and headers streamed without end were held whole (one client drove the server to 3 GB with
    small headers), and a long one was copied again for each part that came (others' lookups took seconds). Past
    64 KiB they are refused with 431, in JSON."""
    first, more = {"many headers": (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-A: b\r\n" * 8192),
                   "one long header": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", b"a" * 65536),
                   "a long request line": (b"GET /v1/lookup?type=email&value=", b"a" * 65536)}[how]
    server = serve(data)
    try:
        before = _rss_mib(server.proc.pid)
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(first)
        sent = _send_until_refused(s, more)
        answer = _answer(s)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["error"] == "request_too_large" and "65,536 bytes" in body["detail"]
        assert sent < 16 << 20, "the server read on past the bound"
        started = time.monotonic()
        assert lookup(server).status_code == 200 and time.monotonic() - started < 1
        assert _rss_mib(server.proc.pid) < before + 50
    finally:
        server.stop()


def test_a_body_past_its_bound_is_refused_before_it_is_read(data):
    server = serve(data)
    try:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"POST /v1/reviews/r_x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % (100 << 20) + b"x" * 65536)
        answer = _answer(s)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "body_too_large"
        # ...and one sent in chunks, without its length: cut off once past it
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"POST /v1/reviews/r_x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        sent = _send_until_refused(s, b"100000\r\n" + b"x" * (1 << 20) + b"\r\n")
        assert sent < 32 << 20 and _answer(s).startswith((b"HTTP/1.1 413 ", b"")), sent
        assert lookup(server).status_code == 200
    finally:
        server.stop()


def test_requests_sent_ahead_are_answered_in_order_and_a_client_that_never_reads_is_not_held_for(data):
    """uvicorn read on after every answer however many requests waited: 700,000 sent ahead on one connection, never
    read, took the server to 1.9 GB. Reading pauses while 64 wait; a client that reads gets every answer."""
    request = b"GET /v1/lookup?type=email&value=c3%40mailbox.org HTTP/1.1\r\nHost: x\r\n\r\n"
    server = serve(data)
    try:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(request * 2000)
        got = b""
        s.settimeout(10)
        while got.count(b"HTTP/1.1 200 ") < 2000:
            chunk = s.recv(1 << 20)
            assert chunk, f"closed after {got.count(b'HTTP/1.1 ')} answers"
            got += chunk
        assert got.count(b"HTTP/1.1 ") == 2000
        s.close()
        before = _rss_mib(server.proc.pid)
        s = socket.create_connection(("127.0.0.1", server.port))
        s.setblocking(False)
        sent, deadline = 0, time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                sent += s.send(request * 1000)
            except BlockingIOError:
                time.sleep(0.01)
        assert _rss_mib(server.proc.pid) < before + 100, sent
        assert lookup(server).status_code == 200
        s.close()
    finally:
        server.stop()


def test_a_request_the_parser_cannot_read_is_answered_in_json(data):
    server = serve(data)
    try:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GARBAGE\r\n\r\n")
        answer = _answer(s)
        assert answer.startswith(b"HTTP/1.1 400 ") and b"application/json" in answer.split(b"\r\n\r\n")[0]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "bad_request"
        # a path with a slash too many is not redirected to the host the client named (it was: a 307 there)
        answer = httpx.get(server.base + "/v1/lookup/", params={"type": "email", "value": "c3@mailbox.org"},
                           headers={"Host": "evil.example"}, timeout=5)
        assert answer.status_code == 404 and "evil.example" not in answer.headers.get("location", "")
    finally:
        server.stop()


def test_a_query_parameter_given_twice_is_refused_not_read_as_the_last(data):
    """``?type=email&type=phone`` was read as the last one given, without a word (so was a second ``value`` or
    ``from``): which the caller meant cannot be told."""
    server = serve(data)
    try:
        for path in ("/v1/lookup?type=email&type=phone&value=c3%40mailbox.org",
                     "/v1/lookup?type=email&value=x%40y.org&value=c3%40mailbox.org", "/v1/changes?from=0&from=1"):
            answer = httpx.get(server.base + path, timeout=5)
            assert answer.status_code == 422, (path, answer.text)
            assert answer.json()["error"] == "invalid_request" and "more than once" in answer.json()["detail"]
        assert httpx.get(server.base + "/v1/lookup?type=email&value=c3%40mailbox.org", timeout=5).status_code == 200
    finally:
        server.stop()


def _responses(data: bytes) -> list[int]:
    """The status codes of the HTTP responses in ``data``, in order."""
    import re

    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


def test_a_request_refused_after_others_on_its_connection_is_answered_after_them(data):
    """A request refused as too large (413, 431) or unreadable (400) behind others on the same connection took the
    place of their answers (a client reading in order took the refusal for its lookup's answer). The others are
    answered first, in their order, then the refusal, then the connection is closed."""
    lookup_request = b"GET /v1/lookup?type=email&value=c3%40mailbox.org HTTP/1.1\r\nHost: x\r\n\r\n"
    server = serve(data)
    try:
        for refused, status in ((b"POST /v1/erasures HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 9000000\r\n\r\n", 413),
                                (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 600_000 + b"\r\n\r\n", 431),
                                (b"GARBAGE\r\n\r\n", 400)):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(lookup_request * 2 + refused)
            assert _responses(_answer(s)) == [200, 200, status], (status,)
        # ...behind a long poll too (the changes from the log's end, answered after a wait)
        end = httpx.get(server.base + "/v1/changes", params={"limit": 10000}, timeout=5).json()["next"]
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /v1/changes?from=%d&wait=1 HTTP/1.1\r\nHost: x\r\n\r\n" % end
                  + b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 600_000 + b"\r\n\r\n")
        assert _responses(_answer(s)) == [200, 431]
    finally:
        server.stop()


def test_a_request_answered_before_its_body_came_still_has_a_deadline(data):
    """A request answered early (a 404 before its body came) and whose body came later left the connection with
    no deadline: it stayed open for good, counted against the connection limit."""
    server = serve(data, IDRES_API_REQUEST_TIMEOUT="1")
    try:
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n")
        s.settimeout(5)
        assert s.recv(65536).startswith(b"HTTP/1.1 404 ")
        s.sendall(b"{}")
        started = time.monotonic()
        assert _closed_by_server(s, 6)
        assert time.monotonic() - started < 4
    finally:
        server.stop()


def test_a_parameter_given_twice_without_a_key_is_unauthorized_first(data):
    server = serve(data, IDRES_API_KEY="k-test-1234567")
    try:
        answer = httpx.get(server.base + "/v1/lookup?type=email&type=phone&value=c3%40mailbox.org", timeout=5)
        assert answer.status_code == 401
        answer = httpx.get(server.base + "/v1/lookup?type=email&type=phone&value=c3%40mailbox.org", timeout=5,
                           headers={"X-API-Key": "k-test-1234567"})
        assert answer.status_code == 422
    finally:
        server.stop()


def test_a_body_too_large_behind_a_long_poll_is_refused_after_the_poll_is_answered(data):
    """The request whose body grows past the bound has a cycle of its own (it is being answered, or waits behind
    others): it is refused once those before it are answered, and the refusal is not held up by the request it
    refuses (which waited for the rest of its body, reading paused: the connection hung)."""
    import threading

    server = serve(data)
    try:
        end = httpx.get(server.base + "/v1/changes", params={"limit": 10000}, timeout=5).json()["next"]
        s = socket.create_connection(("127.0.0.1", server.port))
        head = (b"GET /v1/changes?from=%d&wait=1 HTTP/1.1\r\nHost: x\r\n\r\n" % end
                + b"POST /v1/reviews/r_x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")

        def send() -> None:
            try:
                s.sendall(head)
                for _ in range(10):
                    s.sendall(b"100000\r\n" + b"x" * (1 << 20) + b"\r\n")
            except OSError:
                pass

        sender = threading.Thread(target=send)
        sender.start()
        got = _answer(s, 15)
        sender.join(10)
        assert _responses(got) == [200, 413], got[:300]
        assert lookup(server).status_code == 200
    finally:
        server.stop()


def test_clients_that_read_nothing_send_trailers_or_leave_a_body_half_sent_are_each_cut_off(data):
    """Three ways one connection was held, or grew, for good: a client that reads none of its answers (a close
    waited to send them), a chunked body's trailers (counted by nothing: 2.5 GB from one connection), and a
    request waiting behind another whose body never finished (it was given no deadline)."""
    server = serve(data, IDRES_API_REQUEST_TIMEOUT="2")
    try:
        reader_less = socket.socket()
        reader_less.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader_less.connect(("127.0.0.1", server.port))
        reader_less.sendall(b"GET /v1/changes?limit=10000 HTTP/1.1\r\nHost: x\r\n\r\n" * 64)
        half = socket.create_connection(("127.0.0.1", server.port))
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /v1/reviews/r_x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"de")
        trailers = socket.create_connection(("127.0.0.1", server.port))
        trailers.sendall(b"POST /v1/nothing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n")
        before = _rss_mib(server.proc.pid)
        sent = _send_until_refused(trailers, b"X-T: y\r\n" * 16384)
        assert sent < 32 << 20 and _rss_mib(server.proc.pid) < before + 100, sent
        time.sleep(1)
        started = time.monotonic()
        assert _closed_by_server(half, 6) and time.monotonic() - started < 5
        assert _closed_by_server(reader_less, 8)  # (its answers unread: the connection is dropped with them)
        assert lookup(server).status_code == 200
    finally:
        server.stop()


def test_requests_parsed_ahead_stop_at_the_bound_and_a_dropped_connection_leaves_no_traceback(data):
    """A read of tiny requests became thousands of waiting requests at once (7 to 8 MB a connection that reads
    nothing); and a connection dropped with requests waiting logged a traceback (the one being answered went on
    writing to it). The rest of such a read is held unparsed until answers go."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    server = serve(data)
    try:
        before = _rss_mib(server.proc.pid)
        held = []
        for _ in range(20):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", server.port))
            s.setblocking(False)
            try:
                s.send(request * 100_000)
            except BlockingIOError:
                pass
            held.append(s)
        time.sleep(1)
        assert _rss_mib(server.proc.pid) < before + 60
        for s in held:
            s.close()
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", server.port))
        s.sendall(b"GET /v1/changes?limit=10000 HTTP/1.1\r\nHost: x\r\n\r\n" * 40)
        time.sleep(2)
        s.close()
        time.sleep(1)
        assert lookup(server).status_code == 200
        server.proc.terminate()
        err = server.proc.communicate(timeout=20)[1]
    finally:
        server.stop()
    assert "idres: serving" in err  # (what the server said was read)
    assert "Traceback" not in err and "Exception in ASGI application" not in err, err[-2000:]


def test_a_client_that_half_closes_gets_every_answer(data):
    """A client that sends its requests and then half-closes (it will send nothing more) lost the answers not
    yet written: the server closed at once."""
    server = serve(data)
    try:
        end = httpx.get(server.base + "/v1/changes", params={"limit": 10000}, timeout=5).json()["next"]
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /v1/lookup?type=email&value=c3%40mailbox.org HTTP/1.1\r\nHost: x\r\n\r\n" * 3
                  + b"GET /v1/changes?from=%d&wait=1 HTTP/1.1\r\nHost: x\r\n\r\n" % end)
        s.shutdown(socket.SHUT_WR)
        assert _responses(_answer(s, 10)) == [200, 200, 200, 200]
        assert lookup(server).status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("key, said", [(" ", "refusing to serve on 0.0.0.0 without authentication"),
                                       ("abc", "IDRES_API_KEY is 3 character(s): give a key of 8 characters or more")])
def test_a_blank_or_short_api_key_is_refused_at_start(tmp_path, key, said):
    """A blank key served on every address with every request refused (a blank header is no header); a one-letter
    key was taken, where write keys need 8 characters."""
    (tmp_path / "e.jsonl").write_text('{"event_id": "e1", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web", '
                                      '"event_type": "login", "identifiers": {"email": "a@mailbox.org"}}\n')
    run_cli("ingest", str(tmp_path / "e.jsonl"), "--data-dir", str(tmp_path / "d"))
    done = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0", "--port", "1", check=False,
                   env={"IDRES_API_KEY": key}, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("idres: error: ") and said in done.stderr
    assert done.stderr.count("\n") == 1
