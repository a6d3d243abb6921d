"""HAProxy, Debian's package in a container (deploy/podman/haproxy.Containerfile, made by
`scripts/image.sh standins`), running the configuration the project ships, with its admin
socket and its request log for the tests that put it in front of web servers."""

import contextlib
import csv
import io
import re
import socket
import uuid

from devstack import containers
from devstack.env import PROJECT_DIR
from devstack.ports import LOCALHOST, free_port

HAPROXY_IMAGE = "localhost/delivery-test/haproxy:trixie"
HAPROXY_CONFIG = PROJECT_DIR / "deploy" / "haproxy" / "haproxy.cfg"
# haproxy.cfg's request log (httplog with the path alone):
# "... web/web1 0/0/1/5/6 200 312 - - ---- 3/3/1/0/0 0/0 "GET /health/ HTTP/1.1"".
HTTP_LOG = re.compile(
    r" (?P<backend>\S+)/(?P<server>\S+) [-\d]+/[-\d]+/[-\d]+/[-\d]+/\+?[-\d]+"
    r" (?P<status>-?\d+) \+?\d+ \S+ \S+ (?P<state>\S{4}) \d+/\d+/\d+/\d+/(?P<retries>\+?\d+) "
)


class HAProxy:
    """deploy/haproxy/haproxy.cfg in a container on the host's network, in front of the web
    servers on ports `web1` and `web2` of 127.0.0.1 (the same port twice for one server)."""

    def __init__(self, web1: int, web2: int):
        self.port, self.admin_port = free_port(), free_port()
        self.name = f"delivery-lb-haproxy-{uuid.uuid4().hex[:6]}"
        address = LOCALHOST
        containers.podman(
            "run", "-d", "--name", self.name, "--network", "host",
            "-e", f"LISTEN={address}:{self.port}", "-e", f"ADMIN={address}:{self.admin_port}",
            "-e", f"WEB1={address}:{web1}", "-e", f"WEB2={address}:{web2}",
            "-v", f"{HAPROXY_CONFIG}:/usr/local/etc/haproxy/haproxy.cfg:ro", HAPROXY_IMAGE,
        )  # fmt: skip

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def admin(self, command: str) -> str:
        with socket.create_connection((LOCALHOST, self.admin_port), timeout=5) as conn:
            conn.sendall(f"{command}\n".encode())
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self, server: str) -> str:
        """HAProxy's view of a replica: UP, DOWN, DRAIN, MAINT (and transitions)."""
        with contextlib.suppress(OSError):  # the admin socket is not up yet
            table = self.admin("show stat").lstrip("# ")
            for row in csv.DictReader(io.StringIO(table)):
                if row["pxname"] == "web" and row["svname"] == server:
                    return row["status"]
        return "unknown"

    def log(self) -> str:
        return containers.podman("logs", self.name).stdout

    def requests(self) -> list[dict]:
        return [match.groupdict() for match in HTTP_LOG.finditer(self.log())]

    def remove(self) -> None:
        containers.podman("rm", "-f", "-t", "0", self.name, check=False)
