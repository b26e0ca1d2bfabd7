"""What raises an alert and where it goes: ``serve --alerts FILE`` (TOML; example and defaults
in docs/dashboard.md), ``--alert-webhook URL`` on top.

A file rather than a dozen options on ``serve``: thresholds, two channels and a retry policy
belong together, and a service unit stays readable. Every key is optional and checked here by
pydantic with unknown keys refused, because a typo in an alert threshold must not silently
fall back to a default. Secrets (webhook signing key, SMTP password) are read from files at
start, so a missing file stops ``serve`` instead of failing the first delivery hours later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)

from sarco_core.errors import SarcoError
from sarco_core.files import read_secret

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser from PyPI
    import tomli as tomllib  # type: ignore[no-redef]

RuleName = Literal["device_offline", "temperature_high", "backlog_high", "update_failed",
                   "positive_rate_unusual"]
RULES: tuple[str, ...] = get_args(RuleName)


class AlertSettingsError(SarcoError, ValueError):
    """Alert settings that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleSettings(_Strict):
    """Thresholds. The device ones match the page's health view (queries.HealthRules)."""

    offline_minutes: float = Field(15.0, gt=0)  # lost connection, no word since
    max_temp_c: float = 85.0  # hottest sensor; resolves 3 °C below
    max_backlog: int = Field(20, ge=1)  # results queued on the device; resolves at half
    # positive rate per site: today (recent_days) against the days before (baseline_days)
    rate_recent_days: int = Field(1, ge=1, le=31)
    rate_baseline_days: int = Field(28, ge=1, le=366)
    rate_sigmas: float = Field(3.0, gt=1)  # the band; resolves back within rate_sigmas - 1
    rate_min_recent: int = Field(30, ge=1)  # screened (decided) results before it can fire
    rate_min_baseline: int = Field(200, ge=1)
    disabled: tuple[RuleName, ...] = ()


class WebhookSettings(_Strict):
    url: str
    secret_file: Path | None = None  # signs each body: X-Sarco-Signature: sha256=HMAC
    timeout_s: float = Field(10.0, gt=0)
    _secret: SecretStr | None = PrivateAttr(None)  # read from secret_file, never from the TOML

    @property
    def secret(self) -> SecretStr | None:
        return self._secret

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return url


class EmailSettings(_Strict):
    smtp_host: str
    smtp_port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_file: Path | None = None
    sender: str
    recipients: tuple[str, ...] = Field(min_length=1)
    timeout_s: float = Field(10.0, gt=0)
    _password: SecretStr | None = PrivateAttr(None)  # read from password_file

    @property
    def password(self) -> SecretStr | None:
        return self._password


class DeliverySettings(_Strict):
    """Retries: first_retry_s, doubling up to max_retry_s; after max_attempts the delivery is
    marked failed (shown on /alerts) and not tried again."""

    max_attempts: int = Field(10, ge=1)
    first_retry_s: float = Field(30.0, gt=0)
    max_retry_s: float = Field(3600.0, gt=0)


class AlertSettings(_Strict):
    evaluate_every_s: float = Field(30.0, gt=0)
    rules: RuleSettings = RuleSettings()
    webhook: WebhookSettings | None = None
    email: EmailSettings | None = None
    delivery: DeliverySettings = DeliverySettings()

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels a new alert is queued for."""
        return tuple(name for name in ("webhook", "email") if getattr(self, name) is not None)

    def enabled(self, rule: str) -> bool:
        return rule not in self.rules.disabled


def load_alert_settings(path: Path | None = None,
                        webhook_url: str | None = None) -> AlertSettings:
    """The file's settings (None: the defaults, no channel), ``webhook_url`` replacing the
    file's webhook URL; secrets read from their files."""
    where = f"alert settings {path}" if path else "alert settings"
    raw: dict = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise AlertSettingsError(f"{where}: cannot be read ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise AlertSettingsError(f"{where}: not valid TOML ({exc})") from None
    if webhook_url is not None:
        raw["webhook"] = {**raw.get("webhook", {}), "url": webhook_url}
    try:
        settings = AlertSettings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                             for error in exc.errors())
        raise AlertSettingsError(f"{where}: {problems}") from None
    try:
        return _with_secrets(settings)
    except ValueError as exc:
        raise AlertSettingsError(f"{where}: {exc}") from None


def _with_secrets(settings: AlertSettings) -> AlertSettings:
    webhook, email = settings.webhook, settings.email
    if webhook is not None and webhook.secret_file is not None:
        webhook = webhook.model_copy()
        webhook._secret = SecretStr(read_secret(webhook.secret_file, "webhook.secret_file"))
    if email is not None and email.password_file is not None:
        email = email.model_copy()
        email._password = SecretStr(read_secret(email.password_file, "email.password_file"))
    return settings.model_copy(update={"webhook": webhook, "email": email})
