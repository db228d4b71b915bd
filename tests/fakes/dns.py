"""A UDP DNS server on loopback for the router's resolver (nginx/lua/dns.lua): each name given
answers an A record 127.0.0.1, every other name NXDOMAIN (rcode 3, "name not found"), as
Docker's embedded DNS answers for a compose service that does not run (RFC 1035 4.1 layout)."""

from __future__ import annotations

import socket
import struct
import threading


class FakeDNS:
    def __init__(self, *names: str):
        self.names = set(names)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            self.queries += 1
            qid = data[:2]
            qend = data.index(b"\0", 12) + 5
            labels, i = [], 12
            while data[i]:
                labels.append(data[i + 1:i + 1 + data[i]].decode())
                i += 1 + data[i]
            found = ".".join(labels) in self.names
            flags = 0x8180 if found else 0x8183
            header = qid + struct.pack(">HHHHH", flags, 1, 1 if found else 0, 0, 0)
            answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 30, 4) + bytes([127, 0, 0, 1]) if found else b""
            try:
                self.sock.sendto(header + data[12:qend] + answer, peer)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
