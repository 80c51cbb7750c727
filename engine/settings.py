"""Environment variables → one frozen, validated ``Settings`` object.

Every variable of the original system (spec §13) keeps its name and default;
DragonPBX's own variables follow. Each entry of ``VARIABLES`` declares how to
parse the value and what it means; the README table is generated from it
(``dragonpbx settings --markdown``) so documentation and code cannot drift.
A bad value raises ``ConfigError`` with one line naming the variable and the
accepted form.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.abuse.policy import parse_cidr_list
from engine.errors import ConfigError
from engine.paths import media_dir
from engine.settings_parsers import (  # the table's parsers
    _bool,
    _choice,
    _codec_list,
    _float,
    _host_ports,
    _instance_id,
    _int,
    _loglevel,
    _opt_str,
    _path,
    _ringtone,
    _str,
    _transports,
    _url,
    _worker_index,
    _workers,
)


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# --------------------------------------------------------------------------- table


@dataclass(frozen=True)
class Variable:
    env: str
    attr: str
    default: str | None  # raw default text (parsed like a user value); None = derived
    parse: Callable[[str], Any]
    doc: str
    group: str = "seed"  # "seed" = the original's variable, "new" = DragonPBX's own
    secret: bool = False


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


VARIABLES: tuple[Variable, ...] = (
    # --- the original system's variables (spec §13), same names and defaults
    Variable("DRACHTIO_HOST", "drachtio_host", "localhost", _str,
             "drachtio-server host (SIP_BACKEND=drachtio); default of RTPENGINE_HOST"),
    Variable("DRACHTIO_PORT", "drachtio_port", "9022", _int(1, 65535), "drachtio-server port"),
    Variable("DRACHTIO_SECRET", "drachtio_secret", "cymru", _str,
             "drachtio-server shared secret", secret=True),
    Variable("RTPENGINE_HOST", "rtpengine_hosts", None, _host_ports("RTPENGINE_PORT"),
             "RTPEngine ng endpoints: host[:port] entries separated by commas "
             "(default: DRACHTIO_HOST)"),
    Variable("RTPENGINE_PORT", "rtpengine_port", "2223", _int(1, 65535),
             "ng port for RTPENGINE_HOST entries without a port"),
    Variable("LOGLEVEL", "loglevel", "debug", _loglevel,
             "log level: debug, info, warn, error, fatal"),
    Variable("WEBPORT", "webport", "2999", _int(0, 65535),
             "HTTP API, /metrics and /health port on WEBHOST (0 = off)"),
    Variable("DB_HOST", "db_host", "localhost", _str, "PostgreSQL host (DATA_SOURCE=pg)"),
    Variable("DB_PORT", "db_port", "5432", _int(1, 65535), "PostgreSQL port"),
    Variable("DB_USER", "db_user", "postgres", _str, "PostgreSQL user"),
    Variable("DB_PASSWORD", "db_password", "my_password", _str, "PostgreSQL password",
             secret=True),
    Variable("HTTP_POOL", "http_pool", "false", _bool,
             "accepted for compatibility; the webhook client always pools connections"),
    Variable("HTTP_POOLSIZE", "http_poolsize", "3", _int(1),
             "accepted for compatibility (connections per host are not capped below 100)"),
    Variable("HTTP_PIPELINING", "http_pipelining", "false", _bool,
             "accepted for compatibility (HTTP/1.1 keep-alive is always on)"),
    Variable("HTTP_TIMEOUT", "http_timeout", "30", _float(0, strict=True),
             "seconds bounding HTTP calls that are not webhooks (config API, media fetch)"),
    Variable("HTTP_PROXY_IP", "http_proxy_ip", "", _opt_str,
             "accepted for compatibility (unused, as in the original)"),
    Variable("HTTP_PROXY_PORT", "http_proxy_port", "", _opt_str,
             "accepted for compatibility (unused)"),
    Variable("HTTP_PROXY_PROTOCOL", "http_proxy_protocol", "", _opt_str,
             "accepted for compatibility (unused)"),
    Variable("HTTP_USER_AGENT_HEADER", "http_user_agent", "dragonpbx", _str,
             "User-Agent sent on every webhook and HTTP call"),
    Variable("NODE_ENV", "node_env", "", _opt_str, "accepted for compatibility (unused)"),
    Variable("MEDIA_PATH", "media_path", None, _path,
             "base folder of file: media URLs (default: the shipped media folder)"),
    Variable("FILE_PATH", "file_path", None, _path,
             "base folder of file: CallHook templates (default: working directory)"),
    Variable("REGISTRATION_MIN_SECS", "registration_min_secs", "30", _int(1),
             "shortest registration granted; shorter requests get 423"),
    Variable("REGISTRATION_MAX_SECS", "registration_max_secs", "3600", _int(1),
             "longest registration granted"),
    Variable("DEFAULT_CODECS", "default_codecs", '["G722","PCMA","PCMU"]', _codec_list,
             "codecs for legs without their own list: JSON list or comma list"),
    Variable("DEFAULT_RINGTONE", "default_ringtone", "file:/uk.wav", _ringtone,
             "ringback played by connect (file: relative to MEDIA_PATH, or http(s) URL)"),
    Variable("MAX_RECORDING_DURATION", "max_recording_duration", "300", _int(0),
             "accepted for compatibility (no record verb)"),
    Variable("DATA_SOURCE", "data_source", "api", _choice("api", "json", "pg"),
             "configuration back-end: api, json or pg"),
    Variable("CONFIG_URL", "config_url", "http://127.0.0.1:1337/api/v1/domains",
             _url("http", "https"), "configuration API (DATA_SOURCE=api)"),
    Variable("CONFIG_TOKEN", "config_token", "dev-admin-token-123", _str,
             "bearer token for CONFIG_URL", secret=True),
    Variable("CONFIG_TTL", "config_ttl", "60", _float(0, strict=True),
             "seconds between configuration refreshes (api and pg)"),
    Variable("REGTRUNKREFRESH", "regtrunk_refresh", "60", _float(0, strict=True),
             "seconds between trunk-registration reconciliations"),
    # --- DragonPBX's own variables
    Variable("SIP_BACKEND", "sip_backend", "embedded", _choice("embedded", "drachtio"),
             "SIP stack: embedded (built in) or drachtio (behind a drachtio-server at "
             "DRACHTIO_HOST:DRACHTIO_PORT; README \"drachtio backend\")", group="new"),
    Variable("SIP_HOST", "sip_host", "0.0.0.0", _str, "address the embedded stack listens on",
             group="new"),
    Variable("SIP_PORT", "sip_port", "5060", _int(0, 65535), "SIP port of the embedded stack",
             group="new"),
    Variable("SIP_TRANSPORTS", "sip_transports", "udp,tcp", _transports,
             "transports of the embedded stack: udp, tcp", group="new"),
    Variable("SIP_EXTERNAL_ADDRESS", "sip_external_address", "", _opt_str,
             "address advertised in Via/Contact/SDP when behind NAT (default: listen address)",
             group="new"),
    Variable("REDIS_URL", "redis_url", "redis://localhost:6379/0",
             _url("redis", "rediss", "unix"),
             "Redis URL (password and TLS via rediss:// supported)", group="new", secret=True),
    Variable("CONFIG_FILE", "config_file", "config.json", _path,
             "JSON configuration file (DATA_SOURCE=json)", group="new"),
    Variable("DB_NAME", "db_name", "dragonpbx", _str, "PostgreSQL database name", group="new"),
    Variable("REGHOOK_TIMEOUT", "reghook_timeout", "5", _float(0, strict=True),
             "seconds a RegHook may take", group="new"),
    Variable("CALLHOOK_TIMEOUT", "callhook_timeout", "3", _float(0, strict=True),
             "seconds a CallHook may take", group="new"),
    Variable("STATUSHOOK_TIMEOUT", "statushook_timeout", "3", _float(0, strict=True),
             "seconds a StatusHook may take", group="new"),
    Variable("DRAGONPBX_WEBHOOK_SECRET", "webhook_secret", "", _opt_str,
             "HMAC-SHA256 signing secret for webhook requests (unset = unsigned)",
             group="new", secret=True),
    # --- webhook fallback URLs and circuit breakers (issue 10, defect 9) ---
    Variable("HOOK_BREAKER_THRESHOLD", "hook_breaker_threshold", "5", _int(0),
             "consecutive failures of one RegHook/CallHook URL that open its circuit breaker "
             "(0 = no breakers)", group="new"),
    Variable("HOOK_BREAKER_COOLDOWN", "hook_breaker_cooldown", "5", _float(0, strict=True),
             "seconds an open breaker fails requests to its URL at once, before one probe "
             "request is let through", group="new"),
    # --- end webhook fallback/breaker block ---
    Variable("SHUTDOWN_GRACE_SECS", "shutdown_grace_secs", "30", _float(0),
             "seconds live calls may continue after SIGTERM", group="new"),
    Variable("MEDIA_ALLOW_PRIVATE", "media_allow_private", "false", _bool,
             "allow http(s) media from private/loopback addresses", group="new"),
    Variable("MEDIA_CACHE_DIR", "media_cache_dir", None, _path,
             "cache folder for fetched media (default: <tmp>/dragonpbx-media)", group="new"),
    Variable("MEDIA_CACHE_TTL", "media_cache_ttl", "86400", _float(0),
             "seconds a fetched media file stays cached", group="new"),
    Variable("MEDIA_CACHE_MAX_BYTES", "media_cache_max_bytes", "268435456", _int(0),
             "size bound of the media cache", group="new"),
    Variable("MEDIA_FETCH_MAX_BYTES", "media_fetch_max_bytes", "20971520", _int(1),
             "largest media download accepted", group="new"),
    Variable("STATUSHOOK_LEGACY_NAMES", "statushook_legacy_names", "false", _bool,
             "send the original's connect event names with their trailing space", group="new"),
    Variable("DIALPLAN_PRECEDENCE", "dialplan_precedence", "specific",
             _choice("specific", "legacy"),
             "specific: most specific pattern wins; legacy: last match in JS key order",
             group="new"),
    Variable("CALLHOOK_MAX_RETRIES", "callhook_max_retries", "3", _int(0, 20),
             "CallHook re-fetches for an unresolved call before 604", group="new"),
    Variable("TRUNK_REGISTER_EXPIRES", "trunk_register_expires", "3600", _int(60),
             "expiry requested in outbound trunk REGISTERs (refreshed at about half the "
             "granted value)", group="new"),
    Variable("MAX_CALL_SECS", "max_call_secs", "14400", _int(60),
             "longest a bridged call may last before the PBX hangs it up", group="new"),
    Variable("NONCE_SECRET", "nonce_secret", "", _opt_str,
             "HMAC key for digest nonces; share it between instances (default: random "
             "per process)", group="new", secret=True),
    Variable("NONCE_TTL", "nonce_ttl", "300", _int(1),
             "seconds a digest nonce stays valid before stale=true", group="new"),
    Variable("INSTANCE_ID", "instance_id", None, _instance_id,
             "name of this engine instance (owner of its Redis keys; default host-pid)",
             group="new"),
    Variable("API_TOKEN", "api_token", "", _opt_str,
             "bearer token required by /api/v1/ (unset: no token asked, and WEBHOST must be "
             "loopback or the daemon refuses to start)",
             group="new", secret=True),
    Variable("MACHINES_PATH", "machines_path", None, _path,
             "folder of machine definitions (default: the shipped machines)", group="new"),
    Variable("LOG_FORMAT", "log_format", "json", _choice("json", "text"),
             "log line format", group="new"),
    # --- health (issue 10 defect 6): dependency checks and what OPTIONS answers
    Variable("HEALTH_PING_INTERVAL", "health_ping_interval", "1", _float(0, strict=True),
             "seconds between Redis health PINGs (a down Redis is noticed and its return "
             "seen without traffic)", group="new"),
    Variable("HEALTH_PING_TIMEOUT", "health_ping_timeout", "1", _float(0, strict=True),
             "seconds a health PING may take before Redis counts as down", group="new"),
    Variable("HEALTH_REQUIRE_RTPENGINE", "health_require_rtpengine", "true", _bool,
             "OPTIONS answers 503 while every RTPEngine is down (false: only Redis and "
             "draining take the node out)", group="new"),
    # --- TCP limits (issue 10, defect 5): one client must not exhaust the SIP listener
    Variable("SIP_TCP_MAX_CONNECTIONS", "sip_tcp_max_connections", "10000", _int(1),
             "inbound SIP TCP connections, whole process; also kept below the descriptor "
             "limit minus SIP_TCP_FD_RESERVE", group="new"),
    Variable("SIP_TCP_MAX_PER_SOURCE", "sip_tcp_max_per_source", "100", _int(1),
             "inbound SIP TCP connections from one IPv4 address or IPv6 /64; more are "
             "closed at accept", group="new"),
    Variable("SIP_TCP_IDLE_TIMEOUT", "sip_tcp_idle_timeout", "900", _float(0, strict=True),
             "seconds a SIP TCP connection may carry nothing either way (CRLF keep-alives "
             "count) before it is closed", group="new"),
    Variable("SIP_TCP_FIRST_BYTE_TIMEOUT", "sip_tcp_first_byte_timeout", "5",
             _float(0, strict=True),
             "seconds an accepted SIP TCP connection may stay silent before its first byte",
             group="new"),
    Variable("SIP_TCP_MESSAGE_TIMEOUT", "sip_tcp_message_timeout", "10", _float(0, strict=True),
             "seconds from the first byte of a SIP message on TCP to its last (headers and "
             "body); slower connections are closed", group="new"),
    Variable("SIP_TCP_MAX_BUFFERED_BYTES", "sip_tcp_max_buffered_bytes", "33554432",
             _int(65536),
             "bytes of incomplete SIP messages held over all TCP connections; above it the "
             "largest and oldest partial messages lose their connection", group="new"),
    Variable("SIP_TCP_FD_RESERVE", "sip_tcp_fd_reserve", "512", _int(0),
             "file descriptors kept free of inbound SIP TCP for webhooks, Redis, RTPEngine "
             "and files", group="new"),
    # --- abuse protection: password-guessing bans and the request-rate limit (README
    # "Abuse protection"; engine/abuse)
    Variable("ABUSE_PROTECTION", "abuse_protection", "true", _bool,
             "contain password guessing and request floods (false = every check off)",
             group="new"),
    Variable("ABUSE_ALLOW", "abuse_allow", "127.0.0.0/8,::1", parse_cidr_list,
             "sources never banned, counted or rate-limited (comma list of CIDRs; every "
             "trunk's inbound CIDRs are exempt too)", group="new"),
    Variable("ABUSE_NONCE_MAX_FAILURES", "abuse_nonce_max_failures", "3", _int(1),
             "failed responses a digest nonce survives; then it is answered with a fresh "
             "challenge", group="new"),
    Variable("ABUSE_WINDOW_SECS", "abuse_window_secs", "60", _int(1),
             "seconds over which authentication failures are counted", group="new"),
    Variable("ABUSE_SOURCE_MAX_FAILURES", "abuse_source_max_failures", "10", _int(1),
             "failures from one source address within the window that ban it", group="new"),
    Variable("ABUSE_AOR_MAX_FAILURES", "abuse_aor_max_failures", "20", _int(1),
             "failures on one user@domain (any source) within the window that put it under "
             "attack: each further failing source is banned for that user", group="new"),
    Variable("ABUSE_BAN_SECS", "abuse_ban_secs", "900", _int(1),
             "seconds a ban (and an under-attack mark) lasts", group="new"),
    Variable("ABUSE_RATE_LIMIT", "abuse_rate_limit", "50", _float(0),
             "new REGISTER/INVITE requests per second per source (0 = no limit); excess is "
             "answered 503", group="new"),
    Variable("ABUSE_RATE_BURST", "abuse_rate_burst", "100", _int(1),
             "requests a source may send at once above ABUSE_RATE_LIMIT", group="new"),
    # --- RTPEngine faults (issue 10, defect 7): restart detection and delete retries
    Variable("RTPENGINE_PING_SECS", "rtpengine_ping_secs", "5", _float(0, strict=True),
             "seconds between RTPEngine health pings (each also checks the daemon's uptime "
             "to notice a restart)", group="new"),
    Variable("RTPENGINE_DELETE_RETRY_SECS", "rtpengine_delete_retry_secs", "120", _float(0),
             "how long a delete that could not reach RTPEngine is retried in the background "
             "(0 = no retry)", group="new"),
    # --- HTTP API (issue 13): operator surface on WEBPORT
    Variable("WEBHOST", "webhost", "127.0.0.1", _str,
             "address the HTTP API listens on (non-loopback needs API_TOKEN)", group="new"),
    Variable("API_RECENT_CALLS_SECS", "api_recent_calls_secs", "900", _float(0),
             "seconds an ended call stays visible in the API with its outcome and traces",
             group="new"),
    Variable("API_RECENT_CALLS_MAX", "api_recent_calls_max", "1000", _int(0),
             "most ended calls kept for the API (oldest dropped first)", group="new"),
    # --- several engines and workers (issue 14 item 4; README "Several engines and
    # workers"; engine/supervisor.py, engine/lease.py)
    Variable("WORKERS", "workers", "1", _workers,
             "engine processes sharing the SIP port (SO_REUSEPORT): an integer ≥ 1 or "
             "auto (one per core)", group="new"),
    Variable("WORKER_INDEX", "worker_index", "", _worker_index,
             "set by the supervisor in each worker it starts (the SIP sockets then share "
             "the port); do not set it yourself", group="new"),
    # --- overload (issue 14, item 3): shed new REGISTER/INVITE with a prompt 503 instead
    # of queueing into time-outs (README "Overload"; engine/overload.py)
    Variable("SIP_OVERLOAD_LAG_MS", "sip_overload_lag_ms", "200", _int(0),
             "event-loop lag, or wait of a UDP datagram in the kernel buffer, from which new "
             "REGISTER/INVITE are answered 503 (0 = never)", group="new"),
    Variable("SIP_OVERLOAD_RECOVER_SECS", "sip_overload_recover_secs", "2", _float(0),
             "seconds without lag and without shedding before the node counts as healthy "
             "again (hysteresis)", group="new"),
    Variable("SIP_MAX_PENDING_REQUESTS", "sip_max_pending_requests", "300", _int(0),
             "admitted REGISTER/INVITE not yet answered; more are answered 503 at once "
             "(0 = no bound)", group="new"),
    Variable("SIP_OVERLOAD_RETRY_AFTER", "sip_overload_retry_after", "5", _int(1),
             "Retry-After of an overload 503: a random value between this and twice it",
             group="new"),
)

@dataclass(frozen=True)
class Settings:
    drachtio_host: str
    drachtio_port: int
    drachtio_secret: str
    rtpengine_hosts: tuple[tuple[str, int | None], ...]
    rtpengine_port: int
    loglevel: str
    webport: int
    db_host: str
    db_port: int
    db_user: str
    db_password: str
    http_pool: bool
    http_poolsize: int
    http_pipelining: bool
    http_timeout: float
    http_proxy_ip: str | None
    http_proxy_port: str | None
    http_proxy_protocol: str | None
    http_user_agent: str
    node_env: str | None
    media_path: Path
    file_path: Path
    registration_min_secs: int
    registration_max_secs: int
    default_codecs: tuple[str, ...]
    default_ringtone: str
    max_recording_duration: int
    data_source: str
    config_url: str
    config_token: str
    config_ttl: float
    regtrunk_refresh: float
    sip_backend: str
    sip_host: str
    sip_port: int
    sip_transports: tuple[str, ...]
    sip_external_address: str | None
    redis_url: str
    config_file: Path
    db_name: str
    reghook_timeout: float
    callhook_timeout: float
    statushook_timeout: float
    webhook_secret: str | None
    # webhook fallback URLs and circuit breakers (issue 10, defect 9)
    hook_breaker_threshold: int
    hook_breaker_cooldown: float
    shutdown_grace_secs: float
    media_allow_private: bool
    media_cache_dir: Path
    media_cache_ttl: float
    media_cache_max_bytes: int
    media_fetch_max_bytes: int
    statushook_legacy_names: bool
    dialplan_precedence: str
    callhook_max_retries: int
    trunk_register_expires: int
    max_call_secs: int
    nonce_secret: str | None
    nonce_ttl: int
    instance_id: str
    api_token: str | None
    machines_path: Path
    log_format: str
    # health (issue 10 defect 6)
    health_ping_interval: float
    health_ping_timeout: float
    health_require_rtpengine: bool
    # --- TCP limits (issue 10, defect 5)
    sip_tcp_max_connections: int
    sip_tcp_max_per_source: int
    sip_tcp_idle_timeout: float
    sip_tcp_first_byte_timeout: float
    sip_tcp_message_timeout: float
    sip_tcp_max_buffered_bytes: int
    sip_tcp_fd_reserve: int
    # --- abuse protection (README "Abuse protection")
    abuse_protection: bool
    abuse_allow: tuple[Any, ...]
    abuse_nonce_max_failures: int
    abuse_window_secs: int
    abuse_source_max_failures: int
    abuse_aor_max_failures: int
    abuse_ban_secs: int
    abuse_rate_limit: float
    abuse_rate_burst: int
    # RTPEngine faults (issue 10, defect 7)
    rtpengine_ping_secs: float
    rtpengine_delete_retry_secs: float
    # HTTP API (issue 13)
    webhost: str
    api_recent_calls_secs: float
    api_recent_calls_max: int
    # --- several engines and workers (README "Several engines and workers")
    workers: int
    worker_index: int | None
    # --- overload (issue 14, item 3; README "Overload")
    sip_overload_lag_ms: int
    sip_overload_recover_secs: float
    sip_max_pending_requests: int
    sip_overload_retry_after: int
    # which variables were set explicitly (for the secret-default warning)
    explicit: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def rtpengine_endpoints(self) -> tuple[HostPort, ...]:
        return tuple(HostPort(h, p or self.rtpengine_port) for h, p in self.rtpengine_hosts)

    def default_secret_warnings(self) -> list[str]:
        """Seed secrets still at their well-known default with a non-loopback peer (S-10)."""
        out: list[str] = []
        checks = (
            ("DRACHTIO_SECRET", self.sip_backend == "drachtio", self.drachtio_host),
            ("CONFIG_TOKEN", self.data_source == "api", _url_host(self.config_url)),
            ("DB_PASSWORD", self.data_source == "pg", self.db_host),
        )
        for env, in_use, peer in checks:
            if in_use and env not in self.explicit and not is_loopback_host(peer):
                out.append(
                    f"{env} is the well-known default and is used with non-loopback peer "
                    f"{peer}; set your own"
                )
        return out

    def redacted(self) -> dict[str, Any]:
        """Settings for logs and `dragonpbx settings`: secrets replaced by ``***``."""
        out: dict[str, Any] = {}
        for var in VARIABLES:
            value = getattr(self, var.attr)
            if var.secret and value:
                value = _redact_url(value) if var.env == "REDIS_URL" else "***"
            elif isinstance(value, Path):
                value = str(value)
            out[var.env] = value
        return out


def _url_host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    hostport = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if hostport.startswith("["):
        return hostport[1 : hostport.find("]")]
    return hostport.split(":")[0]


def _redact_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        _creds, _, tail = rest.partition("@")
        return f"{scheme}://***@{tail}"
    return url


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse ``env`` (default ``os.environ``) into ``Settings`` or raise ``ConfigError``."""
    source = os.environ if env is None else env
    values: dict[str, Any] = {}
    explicit: set[str] = set()
    for var in VARIABLES:
        raw = source.get(var.env)
        if raw is not None:
            explicit.add(var.env)
        elif var.default is not None:
            raw = var.default
        if raw is None:
            values[var.attr] = None
            continue
        try:
            values[var.attr] = var.parse(raw)
        except ValueError as exc:
            shown = "***" if var.secret else repr(raw)
            raise ConfigError(f"{var.env}={shown} is invalid: expected {exc}") from None
    # derived defaults
    if values["rtpengine_hosts"] is None:
        values["rtpengine_hosts"] = _host_ports("RTPENGINE_PORT")(values["drachtio_host"])
    if values["media_path"] is None:
        values["media_path"] = media_dir()
    if values["file_path"] is None:
        values["file_path"] = Path.cwd().resolve()
    if values["media_cache_dir"] is None:
        import tempfile

        values["media_cache_dir"] = Path(tempfile.gettempdir()) / "dragonpbx-media"
    if values["instance_id"] is None:
        values["instance_id"] = _default_instance_id()
    if values["machines_path"] is None:
        from engine.paths import machines_dir

        values["machines_path"] = machines_dir()
    if values["registration_min_secs"] > values["registration_max_secs"]:
        raise ConfigError(
            "REGISTRATION_MIN_SECS is invalid: expected an integer ≤ REGISTRATION_MAX_SECS"
        )
    names = {f.name for f in fields(Settings)} - {"explicit"}
    missing = names - values.keys()
    if missing:  # a Variable row is missing for a field: programming error
        raise RuntimeError(f"settings table lacks {sorted(missing)}")
    return Settings(**values, explicit=frozenset(explicit))


def markdown_table() -> str:
    """The README's variable table, generated from ``VARIABLES``."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for group, title in (("seed", "original"), ("new", "DragonPBX")):
        for var in VARIABLES:
            if var.group != group:
                continue
            default = var.default if var.default is not None else "(derived)"
            default = f"`{default}`" if default not in ("", "(derived)") else default or "(unset)"
            lines.append(f"| `{var.env}` | {default} | {var.doc} ({title}) |")
    return "\n".join(lines)


def attr_of(env_name: str) -> str:
    for var in VARIABLES:
        if var.env == env_name:
            return var.attr
    raise KeyError(env_name)


__all__ = ["VARIABLES", "HostPort", "Settings", "load_settings", "markdown_table"]
