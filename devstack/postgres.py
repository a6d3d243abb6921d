"""Starts a throwaway PostgreSQL 15 cluster, for tests that stop, break or starve the database.

initdb into a temp dir and pg_ctl on a free port, run as `nobody` (initdb refuses root),
listening on 127.0.0.1 only. The machine's own PostgreSQL, which CI and the rest of the suite
use, is never touched. PostGIS is available to it (the same installation).
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from devstack.ports import LOCALHOST, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
NOBODY_UID = 65534
NOBODY_GID = 65534


def as_nobody() -> dict:
    """subprocess.run arguments that run the command as `nobody`."""
    return {"user": NOBODY_UID, "group": NOBODY_GID, "extra_groups": []}


class PgCluster:
    """initdb'd into `directory` (owned by nobody; a fresh temp dir when not given)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.port = free_port()
        self._own_dir = directory is None
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="delivery-pg-", dir="/tmp"))
            directory.chmod(0o755)
        directory.mkdir(parents=True, exist_ok=True)
        os.chown(directory, NOBODY_UID, NOBODY_GID)
        self.dir = directory
        self.data = self.dir / "data"
        subprocess.run(
            [PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
            **as_nobody(),
        )

    def start(self) -> None:
        subprocess.run(
            [
                PG_BIN / "pg_ctl",
                *("-D", self.data, "-l", self.dir / "server.log", "-w", "-t", "60"),
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses={LOCALHOST} -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=90,
            **as_nobody(),
        )

    def stop(self) -> None:
        """Stops at once (-m immediate), as a crash or a killed container would."""
        subprocess.run(
            [PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
            **as_nobody(),
        )

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgis://{user}@{LOCALHOST}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host=LOCALHOST, port=self.port, user="postgres", dbname=database, autocommit=True
        )

    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        with self.connect(database) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def remove(self) -> None:
        """Stops the cluster and deletes its directory if this object made it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
