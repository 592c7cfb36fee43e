"""Configuration, read once at start-up from an injected mapping (normally `os.environ`).

Every problem is collected, so a misconfigured deploy prints one clear line per problem instead
of failing on the first. Secrets are wrapped in `Secret`, whose repr and str are masked, so a
settings object can be logged or shown in a traceback without leaking anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from relay.sealing import Sealer

REGIONS = {"pub1": "EU", "pub2": "US"}
# How long an admin sign-in lasts: the console's cookie, and how long housekeeping keeps a
# signed-out session (a copy of the cookie is refused until then).
ADMIN_SESSION_MAX_AGE = 12 * 3600
# Wheels carry the shipped templates inside the package; a source checkout has them beside it.
PACKAGE_TEMPLATES = next(
    (
        p
        for p in (Path(__file__).parent / "templates", Path(__file__).parent.parent / "templates")
        if p.is_dir()
    ),
    Path(__file__).parent / "templates",
)


class Secret:
    """A secret value; prints as '**********' everywhere except `reveal()`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class ConfigError(Exception):
    """Raised with every configuration problem found, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    secret_keys: tuple[Secret, ...]
    public_url: str
    port: int
    passkit_api_url: str
    passkit_pass_url: str
    passkit_api_key: str | None
    passkit_api_secret: Secret | None
    passkit_token: Secret | None
    database_url: Secret  # a PostgreSQL URL holds its password
    templates_dir: Path
    stripe_webhook_secrets: tuple[Secret, ...] = ()
    admin_password: Secret | None = None
    body_limit: int = 1024 * 1024
    retry_budget: float = 20.0
    passkit_timeout: float = 10.0
    idempotency_days: float = 7.0
    retention_days: float = 30.0
    log_payloads: bool = True
    rate_limit: float = 50.0  # deliveries a second per hook; 0 = no limit
    header_timeout: float = 10.0  # seconds for a request line and headers (relay.web.serving)
    header_limit: int = 16 * 1024  # bytes of a request line and headers, like h11's limit
    body_timeout: float = 20.0  # seconds the relay waits for a request's body in all
    keep_alive_timeout: float = 5.0  # seconds an idle kept-alive connection stays open
    trusted_proxies: int = 0  # proxies in front of the relay appending to X-Forwarded-For
    # RELAY_PUBLIC_URL was set: without it `public_url` is only `http://localhost:$PORT`, and
    # the admin console mints URLs at the address the operator's browser used instead.
    public_url_set: bool = False
    # A Slack-compatible incoming webhook told when a hook starts failing and when it recovers
    # (relay.delivery.alerts); its URL is a credential.
    alert_url: Secret | None = None
    # PassKit's webhook signing secret(s) for /passkit/… (relay.events.signature), first to
    # last; and how the outbox retries a forward: first retry after `forward_retry` seconds,
    # doubling up to 30 minutes, given up after `forward_give_up` seconds.
    passkit_webhook_secrets: tuple[Secret, ...] = ()
    forward_retry: float = 10.0
    forward_give_up: float = 86_400.0
    # Calls a second toward PassKit, shared by every process on one PostgreSQL database
    # (relay.passkit.outbound); 0 = no limit. PassKit publishes no figure: see the README.
    passkit_rate_limit: float = 10.0
    # Fernet keys sealing personal data at rest (relay.sealing), first seals, all open; empty:
    # keys derived from RELAY_SECRET_KEY.
    encryption_keys: tuple[Secret, ...] = ()
    # URL prefixes the relay may send to although they are not public https (relay.access.
    # urlguard): a receiver on the operator's own network; and whole URLs the relay itself
    # trusts (set by `relay demo` for its catch page, never from the environment).
    allow_urls: tuple[str, ...] = ()
    allow_exact_urls: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def has_passkit_credentials(self) -> bool:
        return bool(self.passkit_token or (self.passkit_api_key and self.passkit_api_secret))


def display_url(url: str) -> str:
    """A database URL fit for a log line or `relay check`: its password masked."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _number(env: Mapping[str, str], name: str, default: float, problems: list[str]) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        number = float(raw)
    except ValueError:
        problems.append(f"{name} must be a number (got {raw!r}).")
        return default
    if number <= 0:
        problems.append(f"{name} must be greater than 0 (got {raw!r}).")
    return number


def _rate(env: Mapping[str, str], name: str, default: float, problems: list[str]) -> float:
    """A rate a second: a number, or 0 / off / none for no limit."""
    raw = env.get(name, "").strip().lower()
    if raw in ("0", "off", "none"):
        return 0.0
    return _number(env, name, default, problems)


def _check_http_url(name: str, url: str, problems: list[str]) -> None:
    if not url.startswith(("http://", "https://")):
        problems.append(f"{name} must start with http:// or https:// (got {url!r}).")


def _flag(env: Mapping[str, str], name: str, default: bool, problems: list[str]) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    problems.append(f"{name} must be on or off (got {raw!r}).")
    return default


def templates_dir(env: Mapping[str, str], cwd: Path) -> Path:
    if env.get("RELAY_TEMPLATES", "").strip():
        return Path(env["RELAY_TEMPLATES"].strip())
    local = cwd / "templates"
    return local if local.is_dir() else PACKAGE_TEMPLATES


def load_settings(
    env: Mapping[str, str], *, require_secret: bool = True, cwd: Path | None = None
) -> Settings:
    """Build Settings from `env`, raising ConfigError listing every problem found."""
    problems: list[str] = []
    warnings: list[str] = []

    keys = _split(env.get("RELAY_SECRET_KEY"))
    if require_secret and not keys:
        problems.append(
            "RELAY_SECRET_KEY is not set: it signs hook URLs. Set it to a long random value, "
            'e.g. python -c "import secrets; print(secrets.token_urlsafe(32))".'
        )
    for key in keys:
        if len(key) < 16:
            problems.append("RELAY_SECRET_KEY: each key must be at least 16 characters long.")
            break

    port_raw = env.get("PORT", "8000").strip() or "8000"
    port = 8000
    if not port_raw.isdigit() or not 0 < int(port_raw) < 65536:
        problems.append(f"PORT must be a port number between 1 and 65535 (got {port_raw!r}).")
    else:
        port = int(port_raw)

    public_url_set = bool((env.get("RELAY_PUBLIC_URL") or "").strip())
    public_url = (env.get("RELAY_PUBLIC_URL") or f"http://localhost:{port}").strip().rstrip("/")
    _check_http_url("RELAY_PUBLIC_URL", public_url, problems)

    region = (env.get("PASSKIT_REGION") or "pub1").strip().lower()
    if region not in REGIONS:
        problems.append(f"PASSKIT_REGION must be pub1 (EU) or pub2 (US) (got {region!r}).")
        region = "pub1"
    api_url = (env.get("PASSKIT_API_URL") or f"https://api.{region}.passkit.io").strip().rstrip("/")
    _check_http_url("PASSKIT_API_URL", api_url, problems)

    pass_url = (env.get("PASSKIT_PASS_URL") or f"https://{region}.pskt.io").strip().rstrip("/")
    _check_http_url("PASSKIT_PASS_URL", pass_url, problems)

    api_key = (env.get("PASSKIT_API_KEY") or "").strip() or None
    api_secret = (env.get("PASSKIT_API_SECRET") or "").strip() or None
    token = (env.get("PASSKIT_TOKEN") or "").strip() or None
    if bool(api_key) != bool(api_secret):
        missing = "PASSKIT_API_SECRET" if api_key else "PASSKIT_API_KEY"
        problems.append(
            f"{missing} is not set: PASSKIT_API_KEY and PASSKIT_API_SECRET go together."
        )
    if not (token or (api_key and api_secret)):
        warnings.append(
            "No PassKit credentials: set PASSKIT_API_KEY and PASSKIT_API_SECRET "
            "(or PASSKIT_TOKEN); until then only dry runs work."
        )

    database_url = (env.get("DATABASE_URL") or "sqlite:///relay.db").strip()
    if not database_url.startswith(("sqlite://", "postgres://", "postgresql://")):
        problems.append(
            "DATABASE_URL must start with sqlite:///, postgres:// or postgresql:// "
            f"(got {database_url.split('://')[0]!r}://…)."
        )

    stripe_secrets = _split(env.get("STRIPE_WEBHOOK_SECRET"))
    if not stripe_secrets:
        warnings.append(
            "STRIPE_WEBHOOK_SECRET is not set: Stripe endpoints answer 503 until it is "
            "(hooks work without it)."
        )
    for secret in stripe_secrets:
        if not secret.startswith("whsec_"):
            problems.append("STRIPE_WEBHOOK_SECRET: each secret must start with whsec_.")
            break

    folder = templates_dir(env, cwd or Path.cwd())
    if not folder.is_dir():
        problems.append(f"RELAY_TEMPLATES: folder {str(folder)!r} does not exist.")

    admin_password = (env.get("RELAY_ADMIN_PASSWORD") or "").strip() or None
    body_limit = int(_number(env, "RELAY_BODY_LIMIT", 1024 * 1024, problems))
    retry_budget = _number(env, "RELAY_RETRY_BUDGET", 20.0, problems)
    passkit_timeout = _number(env, "PASSKIT_TIMEOUT", 10.0, problems)
    idempotency_days = _number(env, "RELAY_IDEMPOTENCY_DAYS", 7.0, problems)
    retention_days = _number(env, "RELAY_RETENTION_DAYS", 30.0, problems)
    log_payloads = _flag(env, "RELAY_LOG_PAYLOADS", True, problems)
    rate_limit = _rate(env, "RELAY_RATE_LIMIT", 50.0, problems)

    # Behind Heroku's router (DYNO is set there) the router appends the real client address to
    # X-Forwarded-For, and Router 2.0 keeps idle connections to a dyno for 90 s: closing one
    # sooner races with a request it is sending (Heroku's own Python template uses 100 s).
    on_dyno = "DYNO" in env
    header_timeout = _number(env, "RELAY_HEADER_TIMEOUT", 10.0, problems)
    # Zapier, Make and Stripe send 1-2 KB (Heroku's router adds a few hundred bytes); 16 KiB is
    # h11's limit, double the 8 KiB Heroku's router allows a header line.
    header_limit = 16 * 1024
    raw_header_limit = _number(env, "RELAY_HEADER_LIMIT", header_limit, problems)
    if 1024 <= raw_header_limit <= 1024 * 1024:
        header_limit = int(raw_header_limit)
    elif not raw_header_limit <= 0:  # 0 or less: _number said so; this is also inf and nan
        problems.append(
            "RELAY_HEADER_LIMIT must be a number of bytes from 1024 to 1048576 (got "
            f"{env['RELAY_HEADER_LIMIT'].strip()!r}); real requests take a few KB."
        )
    body_timeout = _number(env, "RELAY_BODY_TIMEOUT", 20.0, problems)
    keep_alive_timeout = _number(
        env, "RELAY_KEEP_ALIVE_TIMEOUT", 100.0 if on_dyno else 5.0, problems
    )
    trusted_proxies = 1 if on_dyno else 0
    raw_proxies = env.get("RELAY_TRUSTED_PROXIES", "").strip()
    if raw_proxies:
        if raw_proxies.isdigit() and int(raw_proxies) <= 10:
            trusted_proxies = int(raw_proxies)
        else:
            problems.append(
                "RELAY_TRUSTED_PROXIES must be how many proxies in front of the relay append to "
                f"X-Forwarded-For, 0 to 10 (got {raw_proxies!r})."
            )

    alert_url = (env.get("RELAY_ALERT_URL") or "").strip() or None
    if alert_url and not alert_url.startswith(("http://", "https://")):
        problems.append("RELAY_ALERT_URL must start with http:// or https://.")

    allow_urls = _split(env.get("RELAY_ALLOW_URLS"))
    for prefix in allow_urls:
        parts = urlsplit(prefix)
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            problems.append(
                "RELAY_ALLOW_URLS must be comma-separated web addresses (or their beginnings), "
                f"such as http://10.0.0.5:8080/hooks/, without a password (got {prefix!r})."
            )

    passkit_webhook_secrets = _split(env.get("PASSKIT_WEBHOOK_SECRET"))
    forward_retry = _number(env, "RELAY_FORWARD_RETRY", 10.0, problems)
    forward_give_up = _number(env, "RELAY_FORWARD_GIVE_UP_HOURS", 24.0, problems) * 3600

    passkit_rate_limit = _rate(env, "PASSKIT_RATE_LIMIT", 10.0, problems)
    if not passkit_rate_limit <= 100_000:  # also inf and nan
        raw_passkit_rate = env.get("PASSKIT_RATE_LIMIT", "").strip()
        problems.append(
            f"PASSKIT_RATE_LIMIT must be calls a second, e.g. 10 (got {raw_passkit_rate!r})."
        )

    encryption_keys = _split(env.get("RELAY_ENCRYPTION_KEY"))
    if not all(Sealer.valid_key(key) for key in encryption_keys):
        problems.append(
            "RELAY_ENCRYPTION_KEY: each key (comma-separated, the newest first) must be a Fernet "
            'key, 44 characters of URL-safe base64; make one with: python -c "from '
            'cryptography.fernet import Fernet; print(Fernet.generate_key().decode())".'
        )

    if problems:
        raise ConfigError(problems)
    return Settings(
        secret_keys=tuple(Secret(k) for k in keys),
        public_url=public_url,
        port=port,
        passkit_api_url=api_url,
        passkit_pass_url=pass_url,
        passkit_api_key=api_key,
        passkit_api_secret=Secret(api_secret) if api_secret else None,
        passkit_token=Secret(token) if token else None,
        database_url=Secret(database_url),
        templates_dir=folder,
        stripe_webhook_secrets=tuple(Secret(s) for s in stripe_secrets),
        admin_password=Secret(admin_password) if admin_password else None,
        body_limit=body_limit,
        retry_budget=retry_budget,
        passkit_timeout=passkit_timeout,
        idempotency_days=idempotency_days,
        retention_days=retention_days,
        log_payloads=log_payloads,
        rate_limit=rate_limit,
        header_timeout=header_timeout,
        header_limit=header_limit,
        body_timeout=body_timeout,
        keep_alive_timeout=keep_alive_timeout,
        trusted_proxies=trusted_proxies,
        public_url_set=public_url_set,
        alert_url=Secret(alert_url) if alert_url else None,
        passkit_webhook_secrets=tuple(Secret(s) for s in passkit_webhook_secrets),
        forward_retry=forward_retry,
        forward_give_up=forward_give_up,
        passkit_rate_limit=passkit_rate_limit,
        encryption_keys=tuple(Secret(k) for k in encryption_keys),
        allow_urls=tuple(allow_urls),
        warnings=tuple(warnings),
    )
