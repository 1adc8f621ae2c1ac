"""A TCP proxy that a test can cut and restore, and that can spread connections over replicas.

In front of the real PostgreSQL server, ``cut()`` resets every open connection and refuses
new ones (accepts, then closes), which is what clients see while a database server restarts
or fails over; ``restore()`` lets connections through again. In front of several
``xenbot serve --http`` processes it is a round-robin layer-4 load balancer (bench_ack.py).
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Self

from sqlalchemy.engine import make_url


class TcpProxy:
    def __init__(self, *targets: tuple[str, int]) -> None:
        assert targets, "nothing to proxy to"
        self.targets = list(targets)
        self._next = 0
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._down = False
        self._stopped = False
        self.refused = 0
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)

    @classmethod
    def for_url(cls, url: str) -> Self:
        parsed = make_url(url)
        return cls((parsed.host or "127.0.0.1", parsed.port or 5432))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopped = True
        self.cut()
        self._listener.close()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def url(self, url: str) -> str:
        """``url`` rewritten to go through this proxy."""
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def cut(self) -> None:
        with self._lock:
            self._down = True
            doomed = set(self._open)
        for sock in doomed:
            _reset(sock)

    def restore(self) -> None:
        with self._lock:
            self._down = False

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                self.refused += 1
                _reset(client)
                continue
            with self._lock:
                target = self.targets[self._next % len(self.targets)]
                self._next += 1
            try:
                upstream = socket.create_connection(target, timeout=5)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._open += [client, upstream, client, upstream]  # once per direction
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)  # pass the end of the stream on, politely
        except OSError:
            _reset(source)  # one side broke (or cut()): break the other too
            _reset(sink)
        with self._lock:
            # Each socket is listed once per direction still running; close it after the last.
            self._open.remove(source)
            self._open.remove(sink)
            done = [s for s in (source, sink) if s not in self._open]
        for sock in done:
            sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a dying server's kernel would, rather than a polite FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)  # wakes our own thread blocked in recv(); sends nothing
    except OSError:
        pass
    sock.close()
