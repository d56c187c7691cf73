"""Real Mosquitto brokers for tests: plain, password-protected, TLS, with an optional ACL.

Every broker listens on a free port of 127.0.0.1 only, runs from a config file written to its
own temp dir and is stopped (SIGTERM, then SIGKILL) when its fixture ends. Use the fixtures
through ``pytest_plugins = ["tests.mqtt_broker"]`` in ``tests/conftest.py``, or drive
:class:`MosquittoBroker` directly.

The broker binary is Debian's ``mosquitto`` package (``/usr/sbin/mosquitto``); a missing binary
fails the test with the install hint instead of skipping it, so a machine that cannot run the
MQTT tests is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "BrokerUser",
    "MosquittoBroker",
    "TcpProxy",
    "TlsMaterial",
    "find_mosquitto",
    "make_tls_material",
    "mqtt_broker",
    "mqtt_broker_factory",
    "mqtt_broker_password",
    "mqtt_broker_tls",
    "mqtt_proxy_factory",
    "mqtt_tls_material",
]

HOST = "127.0.0.1"

#: Where Debian installs the binaries; ``/usr/sbin`` is not on every user's ``PATH``.
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")
MOSQUITTO_PASSWD_PATHS = ("/usr/bin/mosquitto_passwd", "/usr/sbin/mosquitto_passwd")

#: How long a broker may take to accept connections. It is ready in ~20 ms on a laptop; a
#: loaded 2-core CI runner can be a hundred times slower, and a failure should still be quick.
START_TIMEOUT = 10.0

#: How long SIGTERM gets before SIGKILL. Mosquitto exits at once without persistence.
STOP_TIMEOUT = 5.0

#: Free-port races (another process grabbing the port between our probe and the broker's bind)
#: are rare; a few attempts make them harmless.
START_ATTEMPTS = 3

INSTALL_HINT = (
    "the MQTT tests need Debian's `mosquitto` package (the test command's set-up runs "
    "`apt-get install mosquitto`); install it or point KRILL_MOSQUITTO at the binary"
)


def find_mosquitto() -> tuple[str, str]:
    """Return the paths of ``mosquitto`` and ``mosquitto_passwd``; fail the test if missing.

    Returns:
        ``(mosquitto, mosquitto_passwd)``.
    """
    broker = os.environ.get("KRILL_MOSQUITTO") or _first_executable("mosquitto", MOSQUITTO_PATHS)
    passwd = _first_executable("mosquitto_passwd", MOSQUITTO_PASSWD_PATHS)
    if broker is None or not os.access(broker, os.X_OK):
        pytest.fail(f"mosquitto not found: {INSTALL_HINT}", pytrace=False)
    if passwd is None:
        pytest.fail(f"mosquitto_passwd not found: {INSTALL_HINT}", pytrace=False)
    return broker, passwd


def _first_executable(name: str, candidates: tuple[str, ...]) -> str | None:
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class BrokerUser:
    """An account in a broker's password file."""

    username: str
    password: str


@dataclass(frozen=True)
class TlsMaterial:
    """A throwaway CA and a server certificate for ``127.0.0.1`` and ``localhost`` (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls_material(directory: Path) -> TlsMaterial:
    """Write a self-signed CA and a server certificate signed by it into ``directory``.

    EC P-256 keys keep generation in the milliseconds. The extensions are the ones strict
    verifiers (``VERIFY_X509_STRICT``, the default from Python 3.13) insist on.

    Returns:
        The paths of the three PEM files.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid_from, valid_to = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "krill test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    directory.mkdir(parents=True, exist_ok=True)
    material = TlsMaterial(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    material.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    material.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    material.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    material.key_file.chmod(0o600)
    return material


class MosquittoBroker:
    """One Mosquitto process on ``127.0.0.1``, configured from a file in its own directory.

    Args:
        workdir: an empty directory that holds the config, password file, ACL and log.
        users: accounts to create; with any, anonymous clients are refused.
        tls: certificate material; with it the listener speaks TLS only (``mqtts://``).
        acl: text of an ACL file (Mosquitto ``acl_file`` syntax) to confine the users.

    Attributes:
        host: always ``127.0.0.1``.
        port: the listener's port, chosen at the first start and kept across restarts.
        url: ``mqtt://127.0.0.1:PORT`` or ``mqtts://...`` for the TLS variant.
    """

    host = HOST

    def __init__(
        self,
        workdir: Path,
        *,
        users: list[BrokerUser] | None = None,
        tls: TlsMaterial | None = None,
        acl: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.users = list(users or [])
        self.tls = tls
        self.acl = acl
        self.port = 0
        self.config_file = workdir / "mosquitto.conf"
        self.log_file = workdir / "mosquitto.log"
        self._binary, self._passwd_binary = find_mosquitto()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls is not None else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def user(self) -> BrokerUser:
        """The first account: the one most tests log in with."""
        return self.users[0]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Write the config (first time), start the broker and wait until it accepts TCP.

        Raises:
            RuntimeError: the broker exited or did not listen within ``START_TIMEOUT``.
        """
        if self.running:
            return
        first = self.port == 0
        for attempt in range(START_ATTEMPTS):
            if first:
                self.port = free_port()
                self._write_config()
            try:
                self._spawn_and_wait()
                return
            except RuntimeError:
                # Only a port chosen by us can be re-chosen; a restart must keep its port.
                if not first or attempt == START_ATTEMPTS - 1:
                    raise

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL after ``STOP_TIMEOUT``. Idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop and start again on the same port with the same config (retained state is lost)."""
        self.stop()
        self.start()

    def log_text(self) -> str:
        """Return what the broker has logged so far (for failure messages)."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_config(self) -> None:
        lines = [
            # Without this the broker holds small packets back (Nagle) and the first messages
            # on a connection wait tens of milliseconds.
            "set_tcp_nodelay true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"listener {self.port} {self.host}",
        ]
        if os.getuid() == 0:
            # Started as root, Mosquitto drops to the `mosquitto` user, which cannot read the
            # files of this temp dir; staying the current user keeps the test self-contained.
            lines.append(f"user {pwd.getpwuid(os.getuid()).pw_name}")
        if self.users:
            password_file = self.workdir / "passwords"
            password_file.write_text("".join(f"{u.username}:{u.password}\n" for u in self.users))
            password_file.chmod(0o600)
            # Hash in place (-U) so no password shows up in a process listing.
            subprocess.run(
                [self._passwd_binary, "-U", str(password_file)],
                check=True,
                capture_output=True,
                timeout=30,
            )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            acl_file = self.workdir / "acl"
            acl_file.write_text(self.acl)
            acl_file.chmod(0o600)
            lines.append(f"acl_file {acl_file}")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
            ]
        self.config_file.write_text("\n".join(lines) + "\n")

    def _spawn_and_wait(self) -> None:
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                [self._binary, "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._process = process
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                raise RuntimeError(
                    f"mosquitto exited with {process.returncode} on port {self.port}:\n"
                    f"{self.log_text()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} in {START_TIMEOUT} s")


class TcpProxy:
    """A loopback TCP forwarder to a broker that a test can cut and restore.

    Cutting it aborts every connection through it (the broker sees the client vanish without
    a DISCONNECT, as when a peer loses power) and stops listening, so reconnects fail until
    :meth:`restore`. Runs in the test's event loop.

    Attributes:
        port: where clients connect (fixed after the first :meth:`start`).
        url: ``mqtt://127.0.0.1:PORT``.
    """

    def __init__(self, target_port: int, *, scheme: str = "mqtt") -> None:
        self.target_port = target_port
        self.scheme = scheme
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    async def start(self) -> None:
        """Listen (on a free port the first time, on the same port after a cut)."""
        self._server = await asyncio.start_server(self._handle, HOST, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def cut(self) -> None:
        """Stop listening and abort every open connection. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def restore(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            await self.start()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        for writer in (client_w, broker_w):
            writer.transport.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
            self._writers.add(writer)
        await asyncio.gather(
            self._pump(client_r, broker_w), self._pump(broker_r, client_w), return_exceptions=True
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            # Mirror a close (or an abort) to the other side, as a dying host would.
            writer.transport.abort()
            self._writers.discard(writer)


def _user(name: str = "krill") -> BrokerUser:
    return BrokerUser(name, secrets.token_urlsafe(12))


@pytest.fixture(scope="session")
def mqtt_tls_material(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    """A CA and a server certificate for 127.0.0.1, shared by the whole run."""
    return make_tls_material(tmp_path_factory.mktemp("mqtt-tls"))


@pytest.fixture(scope="module")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A plain broker (anonymous, no TLS) shared by a module's tests; isolate by swarm name."""
    with MosquittoBroker(tmp_path_factory.mktemp("mqtt-plain")) as broker:
        yield broker


@pytest.fixture(scope="module")
def mqtt_broker_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A broker that refuses anonymous clients; ``broker.user`` holds working credentials."""
    with MosquittoBroker(tmp_path_factory.mktemp("mqtt-password"), users=[_user()]) as broker:
        yield broker


@pytest.fixture(scope="module")
def mqtt_broker_tls(
    tmp_path_factory: pytest.TempPathFactory, mqtt_tls_material: TlsMaterial
) -> Iterator[MosquittoBroker]:
    """A TLS-only broker with a password; trust ``broker.tls.ca_file``."""
    with MosquittoBroker(
        tmp_path_factory.mktemp("mqtt-tls-broker"), users=[_user()], tls=mqtt_tls_material
    ) as broker:
        yield broker


@pytest.fixture
async def mqtt_proxy_factory() -> AsyncIterator[Callable[[int], Awaitable[TcpProxy]]]:
    """Start :class:`TcpProxy` instances to a broker port; all are cut at teardown."""
    proxies: list[TcpProxy] = []

    async def make(target_port: int) -> TcpProxy:
        proxy = TcpProxy(target_port)
        proxies.append(proxy)
        await proxy.start()
        return proxy

    yield make
    for proxy in proxies:
        await proxy.cut()


@pytest.fixture
def mqtt_broker_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """Start private brokers (for tests that restart or reconfigure one); all stop at teardown.

    Call it with the keyword arguments of :class:`MosquittoBroker` (``users``, ``tls``, ``acl``).
    """
    brokers: list[MosquittoBroker] = []

    def make(
        *,
        users: list[BrokerUser] | None = None,
        tls: TlsMaterial | None = None,
        acl: str | None = None,
    ) -> MosquittoBroker:
        workdir = tmp_path / f"broker-{len(brokers)}"
        workdir.mkdir()
        broker = MosquittoBroker(workdir, users=users, tls=tls, acl=acl)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()
