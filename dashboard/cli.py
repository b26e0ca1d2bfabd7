"""``sarco-dashboard``: serve the dashboard, run extra ingest workers, simulate a fleet,
manage staff accounts and API keys.

Exit codes: 0 done, 1 a problem the message explains (unreachable broker, bad database URL,
refused credentials), 2 a usage error.
"""

from __future__ import annotations

import getpass
import logging
import re
import signal
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.logging import RichHandler

from dashboard import auth
from dashboard.db import (
    DEFAULT_URL,
    DatabaseError,
    make_engine,
    migrate,
    require_current,
    session_factory,
)
from sarco_core.cli import CliConsole, CommandGroup, command_group
from sarco_core.errors import CommandFailed
from sarco_core.progress import CommandProgress
from sarco_core.wire.broker import BrokerSettings, read_password_file

app = command_group("sarco-dashboard", "Central dashboard of the sarco screening fleet.")
user_app = CommandGroup(help="Staff accounts.")
key_app = CommandGroup(help="API keys for other systems.")
app.add_typer(user_app, name="user")
app.add_typer(key_app, name="apikey")

log = logging.getLogger("dashboard")
err = CliConsole(stderr=True)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")

BrokerUrl = Annotated[str, typer.Option("--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT")]
DbUrl = Annotated[str, typer.Option("--db", help="sqlite:///PATH or postgresql://USER@HOST/DB")]
Username = Annotated[str | None, typer.Option("--username", help="Broker user name.")]
PasswordFile = Annotated[Path | None, typer.Option(
    "--password-file", help="File whose first line is the broker password.")]
CaFile = Annotated[Path | None, typer.Option("--ca-file", help="CA certificate for mqtts://.")]
ShareGroup = Annotated[str, typer.Option(
    "--share-group", help="MQTT 5 shared-subscription group; all workers of one dashboard "
    "use the same.")]


def _fail(message: str, code: int = 1) -> CommandFailed:
    """The error a command raises: exit 1 when it ran and failed, 2 when what it was given
    cannot be used (docs/dashboard.md); printed by the command group."""
    return CommandFailed(message, code)


def _logging(verbose: bool = False) -> None:
    """Rich log lines on a terminal; plain, unpadded ones with a time stamp otherwise (Rich pads
    each line to the console's width, which for a log file or journald is thousands of
    spaces)."""
    if err.is_terminal:
        handler: logging.Handler = RichHandler(console=err, show_path=False)
        line = "%(message)s"
    else:
        handler, line = logging.StreamHandler(), "%(asctime)s %(levelname)s %(message)s"
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=line,
                        handlers=[handler])
    logging.getLogger("alembic").setLevel(logging.WARNING)  # we say what it did, briefly


def _broker(url: str, username: str | None, password_file: Path | None,
            ca_file: Path | None) -> BrokerSettings:
    try:
        password = read_password_file(password_file) if password_file else None
        return BrokerSettings.from_url(url, username=username, password=password,
                                       ca_file=ca_file)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None


def _engine(db: str, migrate_schema: bool):  # noqa: ANN202
    try:
        engine = make_engine(db)
        if migrate_schema:
            log.info("database schema at revision %s", migrate(engine))
        else:
            require_current(engine)
        return engine
    except DatabaseError as exc:
        raise _fail(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the driver's own errors: unreachable server etc.
        raise _fail(f"cannot open the database {db}: {exc.__class__.__name__}: "
                    f"{str(exc).splitlines()[0]}") from None


def _worker_name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,47}", name):
        raise _fail(f"--worker {name!r}: use up to 48 lower-case letters, digits, '-' or '_'",
                    2)
    return name


def _default_worker() -> str:
    return re.sub(r"[^a-z0-9_-]", "-", socket.gethostname().lower())[:48] or "dashboard"


@app.command()
def serve(
    broker: BrokerUrl,
    db: DbUrl = DEFAULT_URL,
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = 8080,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="No login, no API keys: local trials only (loopback host).")] = False,
    username: Username = None,
    password_file: PasswordFile = None,
    ca_file: CaFile = None,
    worker: Annotated[str | None, typer.Option(
        "--worker", help="This process's ingest worker name (default: host name); stable, "
        "it names the broker session.")] = None,
    share_group: ShareGroup = "sarco-dashboard",
    secure_cookies: Annotated[bool, typer.Option(
        "--secure-cookies", help="Send cookies over HTTPS only (behind a TLS proxy).")] = False,
    alerts_file: Annotated[Path | None, typer.Option(
        "--alerts", help="Alert thresholds and channels (TOML, see docs/dashboard.md); "
        "default: built-in thresholds, alerts on /alerts only.")] = None,
    alert_webhook: Annotated[str | None, typer.Option(
        "--alert-webhook", help="POST each alert as JSON to this URL (replaces the file's "
        "webhook URL).")] = None,
) -> None:
    """Run the web page, the REST API, one ingest worker and the alert loop (migrates the
    database first)."""
    import uvicorn

    from dashboard.alert_service import AlertService
    from dashboard.ingest import IngestSettings, IngestWorker
    from dashboard.web import create_app

    _logging()
    if no_auth and host not in _LOOPBACK:
        raise _fail("--no-auth is for local trials only: use it with --host 127.0.0.1", 2)
    settings = IngestSettings(_broker(broker, username, password_file, ca_file),
                              worker=_worker_name(worker or _default_worker()),
                              share_group=share_group)
    alert_settings = _alert_settings(alerts_file, alert_webhook)
    engine = _engine(db, migrate_schema=True)
    if no_auth:
        for line in ("AUTHENTICATION IS OFF (--no-auth): anyone who reaches this port sees "
                     "every result and can act as staff.",
                     "Use it for local trials only; create accounts with `sarco-dashboard "
                     "user add` and drop --no-auth for real use."):
            log.warning(line)
    elif not _has_users(engine):
        log.warning("no staff account yet: create one with `sarco-dashboard user add NAME "
                    "--role admin --db %s`", db)
    ingest = IngestWorker(engine, settings)
    ingest.start()
    alerting = AlertService(engine, alert_settings)
    alerting.start()
    log.info("alerts: rules evaluated every %.0f s; notifications by %s",
             alert_settings.evaluate_every_s, " and ".join(alert_settings.channels) or
             "none (give --alert-webhook or --alerts FILE)")
    web = create_app(engine, auth_enabled=not no_auth, ingest=ingest,
                     secure_cookies=secure_cookies)
    log.info("dashboard on http://%s:%d (database %s)", host, port,
             engine.url.render_as_string(hide_password=True))
    server = uvicorn.Server(uvicorn.Config(web, host=host, port=port, log_level="warning"))
    _when_failed(ingest, lambda: setattr(server, "should_exit", True))
    try:
        server.run()
    finally:
        alerting.stop()
        ingest.stop()
    if ingest.state.failed:
        raise _fail(ingest.state.failed)


def _alert_settings(path: Path | None, webhook_url: str | None):  # noqa: ANN202
    from dashboard.alert_settings import AlertSettingsError, load_alert_settings

    try:
        return load_alert_settings(path, webhook_url)
    except AlertSettingsError as exc:
        raise _fail(str(exc), 2) from None


def _when_failed(worker, action) -> None:  # noqa: ANN001
    """Call ``action`` once the ingest worker gives up (a refused subscription: waiting does
    not fix it), so the command ends with exit 1 instead of serving without ingest."""

    def watch() -> None:
        while not worker.wait_for(lambda state: state.failed is not None, 3600):
            pass
        action()

    threading.Thread(target=watch, name="ingest-watch", daemon=True).start()


def _has_users(engine) -> bool:  # noqa: ANN001
    from sqlalchemy import func, select

    from dashboard.models import User

    with session_factory(engine)() as session:
        return bool(session.scalar(select(func.count()).select_from(User)))


@app.command()
def ingest(
    broker: BrokerUrl,
    worker: Annotated[str, typer.Option(
        "--worker", help="Unique, stable name of this worker (names its broker session).")],
    db: DbUrl = DEFAULT_URL,
    username: Username = None,
    password_file: PasswordFile = None,
    ca_file: CaFile = None,
    share_group: ShareGroup = "sarco-dashboard",
    retire: Annotated[bool, typer.Option(
        "--retire", help="Take this worker out of service for good: store what the broker "
        "still holds for it, delete its session, exit.")] = False,
) -> None:
    """Run one more ingest worker (no web page) to share the load; stops on Ctrl-C/SIGTERM."""
    from dashboard.ingest import IngestSettings, IngestWorker

    _logging()
    settings = IngestSettings(_broker(broker, username, password_file, ca_file),
                              worker=_worker_name(worker), share_group=share_group)
    engine = _engine(db, migrate_schema=False)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runner = IngestWorker(engine, settings)
    _when_failed(runner, stop.set)
    runner.start()
    if retire:
        if not runner.retire():
            raise _fail(runner.state.failed or
                        f"worker {settings.worker} could not be retired (no connection, or "
                        "messages kept coming); its session is kept, nothing is lost")
        log.info("worker %s retired: %d results stored, session deleted", settings.worker,
                 runner.state.stored)
        return
    stop.wait()
    runner.stop()
    if runner.state.failed:
        raise _fail(runner.state.failed)
    state = runner.state
    log.info("worker %s stopped: %d stored, %d duplicates dropped, %d rejected",
             settings.worker, state.stored, state.duplicates, state.rejected)


@app.command("migrate")
def migrate_command(db: DbUrl = DEFAULT_URL) -> None:
    """Create or upgrade the database schema (serve does this by itself)."""
    _logging()
    engine = _engine(db, migrate_schema=True)
    log.info("database %s is at the current schema",
             engine.url.render_as_string(hide_password=True))


@app.command()
def simulate(
    broker: BrokerUrl,
    devices: Annotated[int, typer.Option("--devices", min=1, help="Devices in the fleet.")] = 20,
    rate: Annotated[float, typer.Option("--rate", help="Results per second per device.")] = 0.2,
    duration: Annotated[float, typer.Option("--duration", help="Seconds to publish.")] = 60.0,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same fleet and results.")] = 0,
    duplicates: Annotated[float, typer.Option(
        "--duplicates", help="Share of results sent twice (the second copy late).")] = 0.0,
    live_rate: Annotated[float, typer.Option(
        "--live-rate", help="Live readings per second per device (0: none).")] = 1.0,
    offline_after: Annotated[list[str] | None, typer.Option(
        "--offline-after", metavar="DEVICE=SECONDS",
        help="Drop this device's connection that many seconds into the run, as a power cut "
        "does (the broker publishes its last will); repeatable.")] = None,
    username: Username = None,
    password_file: PasswordFile = None,
    ca_file: CaFile = None,
) -> None:
    """Publish a realistic fleet's traffic; ends by printing `published N results`."""
    from dashboard.simulate import FleetSimulator, SimulationError, plan_fleet

    settings = _broker(broker, username, password_file, ca_file)
    try:
        simulator = FleetSimulator(settings, plan_fleet(devices, seed), rate=rate,
                                   duration_s=duration, seed=seed, duplicate_share=duplicates,
                                   live_rate=live_rate,
                                   offline_after=_offline_after(offline_after or []))
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    with CommandProgress(err) as progress:
        task = progress.add_task(f"simulating {devices} devices for {duration:g} s",
                                 total=100)
        try:
            report = simulator.run(lambda done: progress.update(task, completed=100 * done))
        except SimulationError as exc:
            raise _fail(str(exc)) from None
    err.print(f"{report.devices} devices, {report.publishing_s:.1f} s publishing "
              f"({report.results / report.publishing_s:.0f} results/s), "
              f"{report.elapsed_s:.1f} s in all: {report.duplicates} duplicates, "
              f"{report.live} live readings, {report.statuses} statuses, "
              f"{report.went_offline} device(s) made to go offline", highlight=False,
              soft_wrap=True)
    typer.echo(f"published {report.results} results")


def _offline_after(values: list[str]) -> dict[str, float]:
    """``--offline-after us-003=20`` as {device: seconds}."""
    chosen = {}
    for value in values:
        device, _, seconds = value.partition("=")
        try:
            chosen[device] = float(seconds)
        except ValueError:
            raise _fail(f"--offline-after {value!r}: write DEVICE=SECONDS, e.g. us-003=20",
                        2) from None
    return chosen


@contextmanager
def _account_change(db: str, failure_code: int = 1, migrate_schema: bool = False):  # noqa: ANN202
    """A session for one change to accounts or keys: an AuthError becomes the command's error
    (exit ``failure_code``), anything else is committed."""
    engine = _engine(db, migrate_schema=migrate_schema)
    with session_factory(engine)() as session:
        try:
            yield session
        except auth.AuthError as exc:
            raise _fail(str(exc), failure_code) from None
        session.commit()


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[Literal[auth.ROLES], typer.Option(
        "--role", help="Account role: admin manages users and keys, staff works referrals, "
                       "readonly only looks.")] = "staff",
    password_file: Annotated[Path | None, typer.Option(
        "--password-file", help="Read the password from this file's first line instead of "
        "a prompt.")] = None,
    db: DbUrl = DEFAULT_URL,
) -> None:
    """Create a staff account (the password is stored as a scrypt hash)."""
    password = _password(name, password_file)
    with _account_change(db, failure_code=2, migrate_schema=True) as session:
        auth.add_user(session, name, role, password)
    typer.echo(f"user {name} ({role}) created")


def _password(name: str, password_file: Path | None) -> str:
    """From the file's first line, else asked twice (never an argument: it would show in
    the shell history and the process list)."""
    if password_file is not None:
        try:
            return read_password_file(password_file)
        except ValueError as exc:
            raise _fail(str(exc), 2) from None
    password = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != password:
        raise _fail("the two passwords differ", 2)
    return password


@user_app.command("list")
def user_list(db: DbUrl = DEFAULT_URL) -> None:
    """Staff accounts: name, role, created (UTC)."""
    engine = _engine(db, migrate_schema=False)
    with session_factory(engine)() as session:
        users = auth.list_users(session)
    if not users:
        err.print("no staff account yet: `sarco-dashboard user add NAME --role admin`")
    for user in users:
        typer.echo(f"{user.name}\t{user.role}\t{user.created_at:%Y-%m-%d %H:%M}")


@user_app.command("remove")
def user_remove(name: Annotated[str, typer.Argument(help="Login name.")],
                db: DbUrl = DEFAULT_URL) -> None:
    """Delete an account and end its sessions (the last admin is kept)."""
    with _account_change(db) as session:
        auth.remove_user(session, name)
    typer.echo(f"user {name} removed")


@user_app.command("reset-password")
def user_reset_password(
    name: Annotated[str, typer.Argument(help="Login name.")],
    password_file: Annotated[Path | None, typer.Option(
        "--password-file", help="Read the new password from this file's first line instead "
        "of a prompt.")] = None,
    db: DbUrl = DEFAULT_URL,
) -> None:
    """Set a new password and end the account's sessions."""
    password = _password(name, password_file)
    try:
        auth.check_password(password)
    except auth.AuthError as exc:
        raise _fail(str(exc), 2) from None
    with _account_change(db) as session:
        auth.reset_password(session, name, password)
    typer.echo(f"password of {name} reset; its sessions ended")


@user_app.command("unlock")
def user_unlock(
    name: Annotated[str | None, typer.Argument(
        help="User name locked out by failed logins.")] = None,
    address: Annotated[str | None, typer.Option(
        "--address", help="Client address locked out by failed logins or invalid API "
        "keys.")] = None,
    db: DbUrl = DEFAULT_URL,
) -> None:
    """Lift a login lock at once and forget the failures counted (see docs/dashboard.md)."""
    from dashboard import throttle

    if name is None and address is None:
        raise _fail("give a user NAME, --address IP, or both", 2)
    subjects = []
    if name is not None:
        subjects.append((f"user {name}", throttle.ACCOUNT, throttle.account(name)))
    if address is not None:
        subjects += [(f"address {address}", rule, throttle.address(address))
                     for rule in (throttle.ADDRESS, throttle.API_ADDRESS)]
    with _account_change(db) as session:
        lifted = {label for label, rule, subject in subjects
                  if throttle.forget(session, rule, subject)}
    for label in dict.fromkeys(label for label, _, _ in subjects):
        typer.echo(f"{label}: {'unlocked' if label in lifted else 'had no failed logins'}")


@key_app.command("create")
def apikey_create(name: Annotated[str, typer.Argument(help="Which system uses the key.")],
                  db: DbUrl = DEFAULT_URL) -> None:
    """Create an API key; it is printed once (only its hash is stored)."""
    with _account_change(db, failure_code=2, migrate_schema=True) as session:
        key = auth.create_api_key(session, name)
    err.print(f"API key {name!r} (shown once; send it as the X-API-Key header):")
    typer.echo(key)


@key_app.command("list")
def apikey_list(db: DbUrl = DEFAULT_URL) -> None:
    """API keys: name, created and, for a revoked one, when (UTC); never the key."""
    engine = _engine(db, migrate_schema=False)
    with session_factory(engine)() as session:
        keys = auth.list_api_keys(session)
    if not keys:
        err.print("no API key yet: `sarco-dashboard apikey create NAME`")
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        typer.echo(f"{key.name}\t{key.created_at:%Y-%m-%d %H:%M}\t{state}")


@key_app.command("revoke")
def apikey_revoke(name: Annotated[str, typer.Argument(help="The key's name.")],
                  db: DbUrl = DEFAULT_URL) -> None:
    """Revoke an API key at once."""
    with _account_change(db) as session:
        if not auth.revoke_api_key(session, name):
            raise _fail(f"no active API key named {name!r}")
    typer.echo(f"API key {name} revoked")


if __name__ == "__main__":
    app()
