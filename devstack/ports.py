"""Starts a listener on loopback that never answers (a hung dependency), and finds free ports
for the rest. Everything listens on 127.0.0.1 only."""

import socket
import threading

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


class SilentListener:
    """A TCP port that accepts connections and never says a word: a hung dependency.

    Connections are held open until `close`, so a client waits for its own read timeout.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((LOCALHOST, 0))
        self._sock.listen(128)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept_forever, daemon=True)
        self._thread.start()

    def _accept_forever(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=2)
        for connection in self.accepted:
            connection.close()
        self._sock.close()
