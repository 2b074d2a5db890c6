"""A throwaway PostgreSQL cluster for tests: Debian's server binaries, a temp dir, a free port.

    with PostgresCluster.start() as cluster:
        url = cluster.create_database("twm")   # postgresql+asyncpg://postgres@127.0.0.1:PORT/twm

It listens on 127.0.0.1 only (its Unix socket sits in the temp dir), trusts local connections (a
test cluster holds nothing) and runs with fsync off. initdb refuses to run as root, so as root the
cluster belongs to the ``postgres`` user that Debian's postgresql package creates.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

BOOTSTRAP_HINT = "run scripts/bootstrap as root (it installs the postgresql package)"
SUPERUSER = "postgres"


def server_binaries() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` with initdb; fails the test if there is none."""
    candidates = []
    for bin_dir in Path("/usr/lib/postgresql").glob("*/bin"):
        version = bin_dir.parent.name
        if re.fullmatch(r"\d+", version) and (bin_dir / "initdb").exists():
            candidates.append((int(version), bin_dir))
    if not candidates:
        pytest.fail(
            f"PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: {BOOTSTRAP_HINT}"
        )
    return max(candidates)[1]


@dataclass
class PostgresCluster:
    bin_dir: Path
    base: Path
    port: int
    run_as: str | None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}):\n{result.stdout}{result.stderr}{log}"
            )

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its asyncpg URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    @classmethod
    @contextmanager
    def start(cls) -> Iterator[PostgresCluster]:
        bin_dir = server_binaries()
        owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail(f"no 'postgres' user to run the test cluster as: {BOOTSTRAP_HINT}")
        # Not pytest's tmp_path: its parents are private to root, and the server runs as postgres.
        base = Path(tempfile.mkdtemp(prefix="twm-postgres-"))
        try:
            if owner is not None:
                os.chown(base, owner.pw_uid, owner.pw_gid)
            run_as = owner.pw_name if owner is not None else None
            cluster = cls(bin_dir=bin_dir, base=base, port=free_port(), run_as=run_as)
            cluster._run(
                "initdb",
                "-D", str(cluster.data_dir),
                "-U", SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            )  # fmt: skip
            server_options = (
                f"-c listen_addresses=127.0.0.1 -c port={cluster.port} "
                f"-c unix_socket_directories={base} -c fsync=off"
            )
            cluster._run(
                "pg_ctl", "-w", "-D", str(cluster.data_dir), "-l", str(cluster.log_file),
                "-o", server_options, "start",
            )  # fmt: skip
            try:
                yield cluster
            finally:
                cluster._run("pg_ctl", "-w", "-D", str(cluster.data_dir), "-m", "fast", "stop")
        finally:
            shutil.rmtree(base, ignore_errors=True)
