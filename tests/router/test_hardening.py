"""Whatever a client sends, the router answers in the OpenAI error shape with the right status,
valid JSON, no internal address, and no [error] line for the client's mistake. Requests go
out as raw bytes (tests/router/rawhttp.py): no client library would send most of them."""

from __future__ import annotations

import pytest

from tests.conftest import QWEN, write_registry
from tests.router.rawhttp import send

H = b"Host: x\r\n"
CHAT = b"POST /v1/chat/completions HTTP/1.1\r\n" + H

# (raw request, status, error code): each answered by nginx itself or by the router.
CASES = {
    "a dot-dot path nginx cannot normalise": (b"GET /../../etc/passwd HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_request"),
    "an escaped dot-dot path": (b"GET /%2e%2e/ HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_request"),
    "an escaped NUL": (b"GET /%00 HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_request"),
    "an asterisk target": (b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_request"),
    "a lowercase method": (b"get /v1/models HTTP/1.1\r\n" + H + b"\r\n", 400, "bad_request"),
    "CONNECT": (b"CONNECT x:443 HTTP/1.1\r\n" + H + b"\r\n", (400, 405), None),
    "TRACE": (b"TRACE /v1/models HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),
    "a method nginx knows but the path does not take": (b"PROPFIND /v1/models HTTP/1.1\r\n" + H + b"\r\n", 405,
                                                        "method_not_allowed"),
    "DELETE on chat": (b"DELETE /v1/chat/completions HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),
    "HTTP/2.0 in a request line": (b"GET /v1/models HTTP/2.0\r\n" + H + b"\r\n", 505, "http_version_not_supported"),
    "no Host": (b"GET /v1/models HTTP/1.1\r\n\r\n", 400, "bad_request"),
    "two Hosts": (b"GET /v1/models HTTP/1.1\r\n" + H + H + b"\r\n", 400, "bad_request"),
    "a space in a header name": (b"GET /v1/models HTTP/1.1\r\n" + H + b"Bad Header: 1\r\n\r\n", 400, "bad_request"),
    "a folded header": (b"GET /v1/models HTTP/1.1\r\n" + H + b"X-A: 1\r\n X-B: 2\r\n\r\n", 400, "bad_request"),
    "a URI over 8 KiB": (b"GET /v1/" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414, "uri_too_long"),
    "a header line over 8 KiB": (b"GET /v1/models HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 9000 + b"\r\n\r\n", 431,
                                 "request_header_too_large"),
    "a negative Content-Length": (CHAT + b"Content-Length: -1\r\n\r\n", 400, "bad_request"),
    "a Content-Length that is not a number": (CHAT + b"Content-Length: abc\r\n\r\n", 400, "bad_request"),
    "both Content-Length and chunked": (CHAT + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                                        400, "bad_request"),
    "an unknown Transfer-Encoding": (CHAT + b"Transfer-Encoding: gzip\r\n\r\n", 501, "not_implemented"),
    "chunked on HTTP/1.0": (b"POST /v1/chat/completions HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                            400, "bad_request"),
    "an invalid chunk size": (CHAT + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400, "bad_request"),
    "a chunk longer than announced": (CHAT + b"Transfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n", 400,
                                      "bad_request"),
    "a body over client_max_body_size": (CHAT + b"Content-Length: 99999999\r\n\r\n", 413, "request_too_large"),
    "an empty chunked body": (CHAT + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_json"),
    "a valid chunked body missing model": (CHAT + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 400,
                                           "missing_model"),
    "invalid UTF-8 in an unknown path": (b"GET /v1/x\xff\xfe HTTP/1.1\r\n" + H + b"\r\n", 404, "unknown_url"),
    "invalid UTF-8 in a model path": (b"GET /v1/models/\xc0\xaf HTTP/1.1\r\n" + H + b"\r\n", 404, "model_not_found"),
    "the error location itself": (b"GET /_router/nginx-error HTTP/1.1\r\n" + H + b"\r\n", 404, "unknown_url"),
}


def body_request(body: bytes) -> bytes:
    return CHAT + b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


CASES.update({
    "stream_options as an array": (body_request(b'{"model": "qwen", "messages": [], "stream": true, '
                                                b'"stream_options": []}'), 400, "invalid_type"),
    "messages as an object": (body_request(b'{"model": "qwen", "messages": {"role": "user"}}'), 400, "invalid_type"),
    "chat_template_kwargs as an array": (body_request(b'{"model": "qwen", "messages": [], '
                                                      b'"chat_template_kwargs": [true]}'), 400, "invalid_type"),
    "101 request headers": (body_request(b'{"model": "qwen", "messages": []}').replace(
        H, H + b"".join(b"X-%d: 1\r\n" % i for i in range(100)), 1), 431, "request_header_too_large"),
    "invalid UTF-8 in model": (body_request(b'{"model": "\xff\xfe", "messages": []}'), 404, "model_not_found"),
    "a 100 KB model name": (body_request(b'{"model": "' + b"m" * 100_000 + b'", "messages": []}'), 404,
                            "model_not_found"),
})


@pytest.mark.parametrize("name", list(CASES))
def test_every_refusal_is_an_openai_error_in_valid_json(stack, name):
    r, *_ = stack
    raw, status, code = CASES[name]
    offset = len(r.log_text())
    resp = send(r.port, raw)
    assert resp is not None, "closed without an answer"
    assert resp.status in (status if isinstance(status, tuple) else (status,)), resp
    assert resp.headers.get("content-type") == "application/json"
    err = resp.error()
    if code:
        assert err["code"] == code, err
    assert len(err["message"]) < 2000
    assert "127.0.0.1" not in err["message"]
    new_lines = r.log_text()[offset:]
    assert "[error]" not in new_lines and "[crit]" not in new_lines and "[alert]" not in new_lines, new_lines


def test_trace_gets_allow(stack):
    r, *_ = stack
    resp = send(r.port, b"TRACE / HTTP/1.1\r\n" + H + b"\r\n")
    assert resp.status == 405 and resp.headers["allow"] == "GET, HEAD, POST"


def test_hop_by_hop_headers_and_the_clients_authorization_stay_at_the_router(stack):
    r, qwen, _ = stack
    resp = r.post("/v1/chat/completions", json={"model": "qwen", "messages": [{"role": "user", "content": "hi"}]},
                  headers={"Authorization": "Bearer sk-client", "Proxy-Authorization": "Basic cHJveHk=",
                           "Proxy-Connection": "keep-alive", "Connection": "keep-alive, X-Hop",
                           "X-Hop": "secret", "Trailer": "X-T", "X-End-To-End": "kept"})
    assert resp.status_code == 200, resp.text
    sent = {k.lower() for k in qwen.requests()[-1]["headers"]}
    assert not sent & {"authorization", "proxy-authorization", "proxy-connection", "x-hop", "trailer", "te",
                       "upgrade", "keep-alive"}, sent
    assert "x-end-to-end" in sent


def test_a_backend_that_needs_a_key_gets_the_routers_never_the_clients(fake_backend, router, tmp_path):
    qwen = fake_backend(QWEN)
    reg = write_registry(tmp_path, {QWEN: {"backend_key_env": "QWEN_BACKEND_KEY"}})
    r = router({"qwen": [qwen.addr]}, registry=reg, env={"QWEN_BACKEND_KEY": "sk-backend"})
    r.wait_state(QWEN, "ready")
    resp = r.post("/v1/chat/completions", json={"model": "qwen", "messages": [{"role": "user", "content": "hi"}]},
                  headers={"Authorization": "Bearer sk-client"})
    assert resp.status_code == 200, resp.text
    assert qwen.requests()[-1]["headers"]["authorization"] == "Bearer sk-backend"
