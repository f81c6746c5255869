"""A throwaway Redis server for host-side tests, set up the way the lab runs Redis: TLS only, the
default user off, one ACL user with a password.

No pytest in here, so a benchmark or another fixture can use it too:

    from tests.redisserver import RedisServer
    with RedisServer() as redis:
        redis.command("SET", "k", "v")
        subprocess.run(["npm", "test"], env={**os.environ, **redis.env()}, ...)

Everything lives in a fresh temporary directory: a CA made for this server alone (its certificate
in `ca_file`, for clients to verify the server with), the server's certificate for 127.0.0.1 and
localhost, the configuration and the log. The server listens on 127.0.0.1 only, on a free port that
it keeps across stop()/start(), so a test can take Redis away from a client and give it back at the
same address; kill() takes it away without a clean shutdown. remove() stops it and deletes the
directory. Nothing is persisted: a restarted server is empty.
"""
from __future__ import annotations

import atexit
import datetime
import hashlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.ports import free_port

REDIS_SERVER = "redis-server"


class RedisNotInstalled(RuntimeError):
    """The redis-server binary is missing: `lab/test-deps.sh` installs it."""


class RedisError(RuntimeError):
    """An error reply from the server (the text after the '-')."""


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_tls_files(directory: Path, stem: str = "redis") -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signs, for 127.0.0.1 and localhost, written into `directory`
    as ca.crt, <stem>.crt and <stem>.key (0600): their paths. Other throwaway TLS servers use it too."""
    now = datetime.datetime.now(datetime.timezone.utc)
    # Back-dated a little: a clock a few seconds behind elsewhere must not see "not yet valid".
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"chajipoa test {stem} CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.crt", directory / f"{stem}.crt", directory / f"{stem}.key")
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    paths[2].chmod(0o600)
    return paths


def _encode(args: tuple[str | bytes | int, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(stream):
    """One RESP2 reply from a binary file object: str, int, bytes, list or None; raises RedisError."""
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("Cannot read a reply from Redis: the connection closed")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise RedisError(body.decode())
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        return None if size < 0 else stream.read(size + 2)[:-2]
    if kind == b"*":
        size = int(body)
        return None if size < 0 else [_read_reply(stream) for _item in range(size)]
    raise ConnectionError(f"Cannot read a reply from Redis: unknown type {kind!r}")


class RedisServer:
    """One Redis server of its own; start() to run it, stop()/kill() to take it away, remove() to
    delete everything."""

    host = "127.0.0.1"
    user = "chajipoa"

    def __init__(self, base_dir: str | os.PathLike | None = None, binary: str = REDIS_SERVER):
        self.binary = binary
        self.base_dir = base_dir
        self.password = secrets.token_urlsafe(24)
        self.port: int | None = None
        self.dir: Path | None = None
        self.process: subprocess.Popen | None = None

    # -- paths and addresses ----------------------------------------------------------------------
    @property
    def ca_file(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def logfile(self) -> Path:
        return self.dir / "redis.log"

    @property
    def url(self) -> str:
        """rediss://user:password@127.0.0.1:port (the password is URL-safe as generated)."""
        return f"rediss://{self.user}:{self.password}@{self.host}:{self.port}"

    def env(self) -> dict:
        """REDIS_URL and REDIS_CA_FILE, the variables the reference API reads."""
        return {"REDIS_URL": self.url, "REDIS_CA_FILE": str(self.ca_file)}

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- lifecycle --------------------------------------------------------------------------------
    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.logfile.read_text(errors="replace").splitlines()[-lines:]
        except (OSError, TypeError):
            return ""
        return "\n--- server log (tail) ---\n" + "\n".join(text) if text else ""

    def _write_config(self) -> Path:
        # The secret goes to the ACL as its SHA-256 (as the redis role writes it), not in clear.
        digest = hashlib.sha256(self.password.encode()).hexdigest()
        config = {
            "bind": self.host,
            "protected-mode": "yes",
            # TLS only, like the lab: no plain TCP port.
            "port": "0",
            "tls-port": str(self.port),
            "tls-cert-file": str(self.dir / "redis.crt"),
            "tls-key-file": str(self.dir / "redis.key"),
            "tls-ca-cert-file": str(self.ca_file),
            "tls-auth-clients": "no",
            "tls-protocols": '"TLSv1.2 TLSv1.3"',
            "dir": str(self.dir),
            "logfile": str(self.logfile),
            "daemonize": "no",
            # A throwaway: nothing saved at shutdown, nothing read back at start.
            "save": '""',
            "appendonly": "no",
        }
        users = [
            "user default off resetpass resetkeys resetchannels -@all",
            f"user {self.user} reset on #{digest} ~* &* +@all",
        ]
        path = self.dir / "redis.conf"
        path.write_text("".join(f"{key} {value}\n" for key, value in config.items()) + "\n".join(users) + "\n")
        return path

    def start(self, timeout: float = 20) -> "RedisServer":
        """Start the server (again, on the same port and with the same CA, after stop() or kill())."""
        if self.running:
            return self
        if shutil.which(self.binary) is None:
            raise RedisNotInstalled(f"{self.binary} not found: the Redis server is not installed; run "
                                    "lab/test-deps.sh as root (or `make integration`, which runs it)")
        first = self.dir is None
        if first:
            self.dir = Path(tempfile.mkdtemp(prefix="chajipoa-redis-", dir=self.base_dir))
            make_tls_files(self.dir)
            atexit.register(self.remove)
        for attempt in range(5):
            if first:
                self.port = free_port()
            self._spawn()
            try:
                self._wait_ready(timeout)
                return self
            except RuntimeError:
                self.kill()
                # Another process took the port between free_port() and the bind: try another.
                if not first or attempt == 4 or "Address already in use" not in self._log_tail():
                    raise
        return self

    def _spawn(self) -> None:
        config = self._write_config()
        self.logfile.write_text("")
        self.process = subprocess.Popen([self.binary, str(config)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self.process.returncode}){self._log_tail()}")
            try:
                if self.command("PING", timeout=2) == "PONG":
                    return
            except (OSError, ConnectionError, RedisError) as exc:
                error = exc
            time.sleep(0.05)
        raise RuntimeError(f"redis-server not ready within {timeout} s: {error}{self._log_tail()}")

    def stop(self, timeout: float = 10) -> None:
        """A clean shutdown (SIGTERM); the directory, port and CA stay for a later start()."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Take the server away at once (SIGKILL), the way a crash does."""
        self._signal(signal.SIGKILL, 10)

    def _signal(self, signum: int, timeout: float) -> None:
        if not self.running:
            return
        self.process.send_signal(signum)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
            atexit.unregister(self.remove)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.remove()

    # -- a client ---------------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the server against this server's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def command(self, *args: str | bytes | int, timeout: float = 5, user: str | None = None,
                password: str | None = None):
        """Run one command over TLS, on a connection of its own, as the ACL user (or `user` with
        `password`); its reply."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as raw, \
                self.ssl_context().wrap_socket(raw, server_hostname=self.host) as conn, \
                conn.makefile("rb") as stream:
            login = (user if user is not None else self.user, password if password is not None else self.password)
            conn.sendall(_encode(("AUTH", *login)) + _encode(args))
            _read_reply(stream)
            return _read_reply(stream)
