"""Database webhooks: matching changes POSTed in order, signed, retried, dead-lettered after N failures."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ledgerbase.events.webhook import WebhookConfigError, parse_webhooks
from tests.conftest import RunningServer
from tests.events.support import insert, metric, wait_for, write_schema

SECRET = "whsec-test-0123456789"


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """An HTTP server that records every POST and answers with scripted statuses per path."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer first
    always: dict[str, int] = field(default_factory=dict)  # path -> status after the script (default 200)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str) -> int:
        with self.lock:
            script = self.scripts.get(path)
            return script.pop(0) if script else self.always.get(path, 200)

    def to(self, path: str, answered: int | None = None) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.path == path and (answered is None or d.answered == answered)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.answer(self.path)
            with state.lock:
                state.deliveries.append(Delivery(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                 body, status))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def migrations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_schema(tmp_path_factory.mktemp("webhooks-schema"))


def _hook(receiver: Receiver, name: str, events: list[str], table: str = "items") -> dict[str, object]:
    return {"name": name, "table": table, "events": events, "url": f"{receiver.url}/{name}", "secret": SECRET}


def _serve(server_factory: Callable[..., RunningServer], migrations: Path, hooks: list[dict[str, object]],
           **settings: object) -> RunningServer:
    """A server with ``hooks``, once each webhook's cursor is set (later changes are delivered)."""
    server = server_factory(migrations, webhooks=hooks, webhooks_retry_initial_seconds=0.05,
                            webhooks_retry_max_seconds=0.2, **settings)
    for hook in hooks:
        wait_for(lambda hook=hook: metric(server, "ledgerbase_events_publishing", f"webhook:{hook['name']}") == 1,
                 what=f"webhook {hook['name']} publishing")
    return server


def _verify(delivery: Delivery, secret: str = SECRET) -> bool:
    timestamp = delivery.headers["x-ledgerbase-timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + delivery.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(delivery.headers["x-ledgerbase-signature"], f"sha256={expected}")


def _dead_letters(server: RunningServer) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/admin/v1/webhooks/deadletters", headers=server.headers(), timeout=10)
    assert response.status_code == 200, response.text
    letters: list[dict[str, Any]] = response.json()
    return letters


def test_matching_changes_are_posted_in_order_and_signed(
        server_factory: Callable[..., RunningServer], migrations: Path, receiver: Receiver) -> None:
    hooks = [_hook(receiver, "inserts", ["INSERT"]), _hook(receiver, "everything", ["*"]),
             _hook(receiver, "elsewhere", ["*"], table="public.other")]
    server = _serve(server_factory, migrations, hooks)
    created = insert(server, [{"name": "a", "qty": 1}, {"name": "b", "qty": 2}])
    assert created.status_code == 201, created.text
    first, second = created.json()
    assert insert(server, [{"name": "never"}], Prefer="return=representation,tx=rollback").status_code == 201
    patched = httpx.patch(f"{server.rest_url}/items?id=eq.{first['id']}", json={"qty": 10}, timeout=10,
                          headers=server.headers())
    assert patched.status_code == 204, patched.text
    deleted = httpx.delete(f"{server.rest_url}/items?id=eq.{second['id']}", headers=server.headers(), timeout=10)
    assert deleted.status_code == 204, deleted.text

    everything = wait_for(lambda: len(receiver.to("/everything")) >= 4 and receiver.to("/everything"),
                          what="4 deliveries to /everything")
    inserts = wait_for(lambda: len(receiver.to("/inserts")) >= 2 and receiver.to("/inserts"),
                       what="2 deliveries to /inserts")
    time.sleep(0.3)  # nothing more arrives
    assert len(receiver.to("/everything")) == 4 and len(receiver.to("/inserts")) == 2
    assert receiver.to("/elsewhere") == []

    events = [delivery.event for delivery in everything]
    assert [(e["type"], e["table"], e["schema"]) for e in events] == [
        ("INSERT", "items", "public"), ("INSERT", "items", "public"),
        ("UPDATE", "items", "public"), ("DELETE", "items", "public")]
    assert events[0]["record"] == first and events[0]["old_record"] is None
    assert events[2]["record"] == {**first, "qty": 10} and events[2]["old_record"] == {"id": first["id"]}
    assert events[3]["record"] is None and events[3]["old_record"] == {"id": second["id"]}
    seqs = [e["ledger_seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert [d.event for d in inserts] == events[:2]

    for delivery in [*everything, *inserts]:
        assert delivery.headers["content-type"] == "application/json"
        assert abs(int(delivery.headers["x-ledgerbase-timestamp"]) - time.time()) < 60
        assert _verify(delivery)
        assert not _verify(delivery, secret="another secret")
    assert _dead_letters(server) == []


def test_a_failed_delivery_is_retried_until_it_succeeds(
        server_factory: Callable[..., RunningServer], migrations: Path, receiver: Receiver) -> None:
    receiver.scripts["/flaky"] = [500]
    server = _serve(server_factory, migrations, [_hook(receiver, "flaky", ["INSERT"])])
    created = insert(server, [{"name": "a"}])
    assert created.status_code == 201, created.text
    wait_for(lambda: receiver.to("/flaky", answered=200), what="a successful delivery")
    later = insert(server, [{"name": "b"}])
    assert later.status_code == 201, later.text
    wait_for(lambda: len(receiver.to("/flaky", answered=200)) >= 2, what="the second delivery")
    time.sleep(0.3)

    failed, ok, second = receiver.to("/flaky")
    assert (failed.answered, ok.answered, second.answered) == (500, 200, 200)
    assert failed.body == ok.body and ok.event["record"] == created.json()[0]
    assert second.event["record"] == later.json()[0]
    assert all(_verify(delivery) for delivery in (failed, ok, second))
    assert _dead_letters(server) == []


def test_a_change_that_keeps_failing_becomes_a_dead_letter_and_delivery_moves_on(
        server_factory: Callable[..., RunningServer], migrations: Path, receiver: Receiver) -> None:
    receiver.scripts["/down"] = [503, 503, 503]
    server = _serve(server_factory, migrations, [_hook(receiver, "down", ["INSERT"])], webhooks_max_attempts=3)
    created = insert(server, [{"name": "lost"}, {"name": "kept"}])
    assert created.status_code == 201, created.text
    lost, kept = created.json()

    letters = wait_for(lambda: _dead_letters(server), what="a dead letter")
    assert len(letters) == 1
    letter = letters[0]
    assert (letter["webhook"], letter["status"], letter["error"], letter["attempts"]) == ("down", 503, "HTTP 503", 3)
    assert orjson.loads(letter["payload"])["record"] == lost
    assert letter["failed_at"].endswith("Z")

    delivered = wait_for(lambda: receiver.to("/down", answered=200), what="the next change delivered")
    assert [d.event["record"] for d in delivered] == [kept]
    assert delivered[0].event["ledger_seq"] > letter["ledger_seq"]
    assert [d.answered for d in receiver.to("/down")] == [503, 503, 503, 200]


def test_an_unreachable_receiver_is_dead_lettered_without_a_status(
        server_factory: Callable[..., RunningServer], migrations: Path) -> None:
    hook = {"name": "nowhere", "table": "items", "events": ["*"], "url": "http://127.0.0.1:9/hook", "secret": SECRET}
    server = _serve(server_factory, migrations, [hook], webhooks_max_attempts=2)
    assert insert(server, [{"name": "a"}]).status_code == 201
    letters = wait_for(lambda: _dead_letters(server), what="a dead letter")
    assert (letters[0]["webhook"], letters[0]["status"], letters[0]["attempts"]) == ("nowhere", None, 2)
    assert letters[0]["error"] == "ConnectError"


def test_the_dead_letters_are_for_the_service_role_only(
        server_factory: Callable[..., RunningServer], migrations: Path) -> None:
    server = server_factory(migrations)
    url = f"{server.url}/admin/v1/webhooks/deadletters"
    anon = httpx.get(url, headers=server.headers("anon"), timeout=10)
    assert anon.status_code == 403, anon.text
    assert httpx.get(url, timeout=10).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer not-a-token"}, timeout=10).status_code == 401
    assert httpx.post(url, headers=server.headers(), timeout=10).status_code == 405
    served = httpx.get(url, headers=server.headers(), timeout=10)
    assert served.status_code == 200 and served.json() == []


@pytest.mark.parametrize(("entry", "problem"), [
    ({"table": "t", "url": "http://x", "secret": "s"}, "'name'"),
    ({"name": "n", "table": "t", "url": "ftp://x", "secret": "s"}, "'url'"),
    ({"name": "n", "table": "t", "url": "http://x"}, "'secret'"),
    ({"name": "n", "table": "t", "url": "http://x", "secret": "s", "events": ["TRUNCATE"]}, "TRUNCATE"),
    ({"name": "n", "table": "t", "url": "http://x", "secret": "s", "events": []}, "'events'"),
])
def test_invalid_webhooks_are_refused(entry: dict[str, object], problem: str) -> None:
    with pytest.raises(WebhookConfigError, match=problem):
        parse_webhooks([entry])


def test_webhooks_are_parsed() -> None:
    first, second = parse_webhooks([
        {"name": "a", "table": "public.todos", "events": ["insert", "DELETE"], "url": "https://x", "secret": "s"},
        {"name": "b", "table": "auth.users", "events": "*", "url": "http://y", "secret": "t"}])
    assert (first.table, first.events) == ("todos", frozenset({"INSERT", "DELETE"}))
    assert (second.table, second.events) == ("auth.users", frozenset({"INSERT", "UPDATE", "DELETE"}))
    assert SECRET not in repr(parse_webhooks([{"name": "c", "table": "t", "url": "http://x", "secret": SECRET}]))
    with pytest.raises(WebhookConfigError, match="twice"):
        parse_webhooks([{"name": "a", "table": "t", "url": "http://x", "secret": "s"}] * 2)


def test_docs_verify_example_accepts_a_real_delivery(
        server_factory: Callable[..., RunningServer], migrations: Path, receiver: Receiver) -> None:
    guide = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    example = guide.split("## Webhooks", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(example, namespace)  # the guide's own example, run as written
    server = _serve(server_factory, migrations, [_hook(receiver, "docs", ["*"])])
    assert insert(server, [{"name": "docs"}]).status_code == 201
    delivery = wait_for(lambda: receiver.to("/docs"), what="a delivery")[0]
    assert namespace["verify"](SECRET, delivery.headers, delivery.body)
    assert not namespace["verify"](SECRET, delivery.headers, delivery.body + b" ")
    assert not namespace["verify"]("wrong", delivery.headers, delivery.body)
