"""Raw HTTP/1.1 on a socket, for requests no client library would send (tests/router)."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

import h11


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict:
        """The OpenAI error object; fails the test if the body is not exactly that shape."""
        obj = json.loads(self.body.decode("utf-8"))   # strict: invalid UTF-8 or JSON raises
        assert set(obj) == {"error"}, obj
        err = obj["error"]
        assert set(err) == {"message", "type", "param", "code"}, err
        assert isinstance(err["message"], str) and err["message"], err
        assert isinstance(err["type"], str) and err["type"], err
        # The router's codes are strings; trtllm-serve's own errors pass with its number.
        assert err["code"] is None or isinstance(err["code"], (str, int)), err
        return err

    def anthropic_error(self) -> dict:
        """Anthropic's error object (the /v1/messages endpoints); fails the test on any other shape."""
        obj = json.loads(self.body.decode("utf-8"))
        assert set(obj) == {"type", "error"} and obj["type"] == "error", obj
        err = obj["error"]
        assert set(err) == {"type", "message"}, err
        assert isinstance(err["message"], str) and err["message"], err
        assert isinstance(err["type"], str) and err["type"], err
        return err


def send(port: int, data: bytes, timeout: float = 10.0) -> RawResponse | None:
    """Sends DATA as is and parses the first response with h11 (strict HTTP/1.1); None when
    the router closes without answering."""
    conn = h11.Connection(h11.CLIENT)
    # h11 checks what it parses only; it is told a request went out so it reads the answer
    # (a HEAD answer has no body).
    method = "HEAD" if data.startswith(b"HEAD ") else "GET"
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    # No shutdown(SHUT_WR): nginx takes a half-closed client for one that left (499).
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        status, headers, body = None, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk and status is None:
                    return None
                conn.receive_data(chunk)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return RawResponse(status, headers, body)
