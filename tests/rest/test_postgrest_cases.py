"""The PostgREST 12 conformance cases (tests/rest/cases) against a real server, per dialect."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .cases import ABSENT, ANY, NO_BODY, Case, all_cases

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SHARED_FIXTURE = FIXTURES / "rest"
POSTGRES_FIXTURE = FIXTURES / "rest_postgres"
DIALECTS = ("sqlite", "postgres")
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}

# Characters sent as they are; everything else is percent-encoded byte by byte,
# so a case path reaches the server exactly as the upstream spec wrote it.
_URL_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?"
)
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _params() -> Iterator[Any]:
    # dialect-major order, so each dialect's module-scoped server starts once
    for dialect in DIALECTS:
        for case in all_cases():
            if dialect in case.dialects:
                yield pytest.param(dialect, case, id=f"{dialect}-{case.name}")
            elif case.elsewhere_4xx:
                yield pytest.param(dialect, case, id=f"{dialect}-{case.name} (4xx)")


@pytest.fixture(scope="module")
def server(server_factory: Any, dialect: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One server per dialect with the fixture applied (plus the PostgreSQL-only part there)."""
    migrations = SHARED_FIXTURE
    if dialect == "postgres":
        migrations = tmp_path_factory.mktemp("rest-fixture")
        for source in (SHARED_FIXTURE, POSTGRES_FIXTURE):
            for sql in sorted(source.glob("*.sql")):
                shutil.copy(sql, migrations / sql.name)
    return server_factory(migrations)


@pytest.fixture(scope="module")
def http(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.rest_url, timeout=30) as client:
        yield client


def encode_target(path: str) -> str:
    """Percent-encode what a URL may not carry raw, keeping existing %XX escapes."""
    out: list[str] = []
    index = 0
    while index < len(path):
        char = path[index]
        if char == "%" and _PERCENT_ESCAPE.match(path, index):
            out.append(path[index:index + 3])
            index += 3
            continue
        if char in _URL_SAFE:
            out.append(char)
        else:
            out.append("".join(f"%{byte:02X}" for byte in char.encode()))
        index += 1
    return "".join(out)


def request_headers(case: Case, server: Any) -> dict[str, str]:
    key = server.service_key if case.role == "service_role" else server.anon_key
    headers = {"apikey": key, "Authorization": f"Bearer {key}"}
    headers.update(case.headers)
    if case.method in WRITE_METHODS and case.rollback:
        prefer = [p for p in (headers.pop("Prefer", ""),) if p]
        headers["Prefer"] = ", ".join([*prefer, "tx=rollback"])
    if case.body is not NO_BODY and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    return headers


def request_content(case: Case) -> bytes | None:
    if case.body is NO_BODY:
        return None
    if isinstance(case.body, str):
        return case.body.encode()
    return json.dumps(case.body).encode()


def same_json(expected: Any, actual: Any, unordered: bool = False) -> bool:
    """JSON equality as aeson sees it: numbers by value, booleans apart from numbers."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, (int, float)) or isinstance(actual, (int, float)):
        return (isinstance(expected, (int, float)) and isinstance(actual, (int, float))
                and expected == actual)
    if isinstance(expected, dict):
        return (isinstance(actual, dict) and expected.keys() == actual.keys()
                and all(same_json(expected[k], actual[k], unordered) for k in expected))
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            return False
        if not unordered:
            return all(same_json(e, a) for e, a in zip(expected, actual, strict=True))
        remaining = list(actual)
        for item in expected:
            match = next((i for i, a in enumerate(remaining) if same_json(item, a, True)), None)
            if match is None:
                return False
            remaining.pop(match)
        return True
    return bool(expected == actual)


def parse_error_shape(body: Any) -> Any:
    """A PGRST100 error without PostgREST's parser diagnostics.

    PostgREST's parser (Parsec) appends "(line 1, column N)" to the message and
    puts its own expectation list in ``details``; Ledgerbase's parser says the
    same thing in its own words, so only the code and the failing parameter
    (the message up to the position) are compared.
    """
    if not (isinstance(body, dict) and body.get("code") == "PGRST100"):
        return body
    message = re.sub(r" \(line \d+, column \d+\)$", "", str(body.get("message")))
    return {"code": "PGRST100", "message": message}


def unordered(case: Case) -> bool:
    """Without an order parameter PostgREST promises no row order, at any level."""
    return case.unordered or "order=" not in case.path


def contains_json(expected: Any, actual: Any) -> bool:
    if not isinstance(actual, dict):
        return False
    return all(k in actual and same_json(v, actual[k]) for k, v in expected.items())


def header_problems(case: Case, response: httpx.Response) -> list[str]:
    problems = []
    for name, want in case.response_headers.items():
        got = response.headers.get(name)
        if want is ABSENT:
            if got is not None:
                problems.append(f"header {name} should be absent, got {got!r}")
            continue
        if got is not None and name.lower() == "preference-applied":
            # the runner's own tx=rollback is not part of what upstream expects
            got = ", ".join(p.strip() for p in got.split(",") if not p.strip().startswith("tx="))
        if got != want:
            problems.append(f"header {name}: expected {want!r}, got {got!r}")
    return problems


def describe(case: Case, target: str, headers: dict[str, str], content: bytes | None,
             response: httpx.Response) -> str:
    shown = {k: ("<key>" if k.lower() in {"apikey", "authorization"} else v)
             for k, v in headers.items()}
    lines = [
        f"case: {case.name}" + (f" ({case.note})" if case.note else ""),
        f"request: {case.method} {target}",
        f"request headers: {shown}",
    ]
    if content is not None:
        lines.append(f"request body: {content.decode(errors='replace')}")
    lines.append(f"expected status: {case.status}")
    if case.json is not ANY:
        lines.append(f"expected json: {json.dumps(case.json, ensure_ascii=False)}")
    if case.json_contains is not None:
        lines.append(f"expected json to contain: {json.dumps(case.json_contains)}")
    if case.text is not None:
        lines.append(f"expected text: {case.text!r}")
    if case.response_headers:
        lines.append(f"expected headers: {dict(case.response_headers)}")
    lines += [
        f"response status: {response.status_code}",
        f"response headers: {dict(response.headers)}",
        f"response body: {response.text}",
    ]
    return "\n".join(lines)


@pytest.mark.parametrize(("dialect", "case"), list(_params()), indirect=["dialect"], scope="module")
def test_postgrest_case(case: Case, server: Any, http: httpx.Client) -> None:
    target = encode_target(case.path)
    headers = request_headers(case, server)
    content = request_content(case)
    response = http.request(case.method, target, headers=headers, content=content)
    report = describe(case, target, headers, content, response)

    if server.dialect not in case.dialects:
        assert 400 <= response.status_code < 500, report
        return

    problems = []
    if response.status_code != case.status:
        problems.append(f"status: expected {case.status}, got {response.status_code}")
    problems += header_problems(case, response)
    if case.text is not None and response.text != case.text:
        problems.append("text body differs")
    if case.json is not ANY or case.json_contains is not None:
        try:
            body = response.json()
        except ValueError:
            problems.append("body is not JSON")
        else:
            expected = parse_error_shape(case.json) if case.json is not ANY else ANY
            actual = parse_error_shape(body) if expected is not case.json else body
            if expected is not ANY and not same_json(expected, actual, unordered(case)):
                problems.append("json body differs")
            if case.json_contains is not None and not contains_json(case.json_contains, body):
                problems.append("json body lacks expected keys")
    assert not problems, "; ".join(problems) + "\n" + report
