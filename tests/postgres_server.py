"""A throwaway PostgreSQL server for the tests: initdb into a temp folder, pg_ctl start on a free port.

Found from IMAGINE_PG_BIN, `pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH. As root (PostgreSQL
refuses to run as root) the server runs as the `postgres` user through runuser. `start()` raises
Unavailable with a one-line reason when no server can be started.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path


class Unavailable(Exception):
    """No PostgreSQL server can be started here (the reason in one line)."""


def find_bindir() -> Path | None:
    candidates = [os.environ.get("IMAGINE_PG_BIN", "")]
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            candidates.append(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                             timeout=10).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    bindir: Path
    folder: Path
    port: int
    as_user: list[str]

    @property
    def url(self) -> str:
        """An asyncpg URL to the `postgres` database, as the superuser `postgres` (trust auth)."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)


def start() -> Server:
    bindir = find_bindir()
    if bindir is None:
        raise Unavailable("no PostgreSQL server binaries (initdb, pg_ctl) found; set IMAGINE_PG_BIN")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="imagine-pg-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder, ignore_errors=True)
            raise Unavailable("running as root and there is no `postgres` user to run the server as") from None
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    initdb = [*as_user, str(bindir / "initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres",
              "-E", "UTF8", "--no-sync"]
    start_cmd = [*as_user, str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "log"), "-w",
                 "-t", "60", "-o", f"-k {folder} -c listen_addresses=127.0.0.1 -p {port} -c fsync=off "
                 "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200", "start"]
    for command in (initdb, start_cmd):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise Unavailable(f"{Path(command[len(as_user)]).name} could not run: {error}") from None
        if done.returncode != 0:
            log = (folder / "log").read_text(errors="replace") if (folder / "log").exists() else ""
            shutil.rmtree(folder, ignore_errors=True)
            last = (done.stderr.strip() or log.strip() or f"exit status {done.returncode}").splitlines()[-1]
            raise Unavailable(f"{Path(command[len(as_user)]).name} failed: {last}")
    return Server(bindir, folder, port, as_user)


@asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    """A new, empty database on that server (its URL), dropped on the way out."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    name = f"imagine_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.dispose()
