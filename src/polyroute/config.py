"""Configuration: find the TOML file, validate it, resolve providers and keys.

Order: ``--config PATH``, ``$POLYROUTE_CONFIG``, ``./polyroute.toml``,
``$XDG_CONFIG_HOME/polyroute/config.toml``. With no file, providers come from
the usual environment variables and a reachable Ollama. Every problem is one
:class:`ConfigError` line naming the file, the key and what is wrong.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from polyroute._plugins import STRATEGIES, installed
from polyroute.catalog import Catalog, ModelOverride
from polyroute.credentials import Vault, vault_for
from polyroute.credentials import valid_id as valid_vault_id  # one id rule, the vault's
from polyroute.errors import ConfigError, CredentialError, PolyrouteError, WrongPassphraseError
from polyroute.hub import EVENT_KINDS
from polyroute.providers import (
    MB,
    Provider,
    Secret,
    is_provider_type,
    plugin_catalog,
    plugin_local_types,
    unknown_type_message,
)
from polyroute.types import MAX_USD, Capability

Strategy = str  # a built-in name or "pkg.module:Class"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BalancedWeights(_Section):
    cost: float = Field(0.35, ge=0)
    quality: float = Field(0.40, ge=0)
    performance: float = Field(0.25, ge=0)


class CircuitBreakerConfig(_Section):
    failure_threshold: int = Field(5, ge=1)
    reset_timeout_s: float = Field(60, gt=0)
    half_open_requests: int = Field(1, ge=1)


class RouterConfig(_Section):
    strategy: Strategy = "balanced"
    max_attempts: int = Field(4, ge=1)
    retries_per_provider: int = Field(1, ge=0)
    timeout_s: float = Field(60, gt=0)
    balanced_weights: BalancedWeights = BalancedWeights()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    quality_source: Literal["catalog", "bench"] = "catalog"
    """bench: quality per task type (and seed latencies) from the latest finished bench run."""
    carbon_baseline: str = ""
    """A provider id: ``usage`` reports the gCO2e saved against sending the same tokens to it."""

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        builtin = {"cost", "quality", "performance", "balanced", "carbon"}
        if v not in builtin and ":" not in v and v not in installed(STRATEGIES):
            plugins = ", ".join(sorted(installed(STRATEGIES))) or "none"
            raise ValueError(
                f"must be one of {sorted(builtin)}, an installed strategy (installed: "
                f"{plugins}) or 'pkg.module:Class'"
            )
        return v


class HealthConfig(_Section):
    interval_s: float = Field(60, ge=0)


class StorageConfig(_Section):
    url: str = ""
    redis_url: str = ""
    """Redis shared by the replicas (breakers, health, key revocations, latency); empty:
    each process keeps its own."""
    durability: Literal["answered", "batched"] = "answered"
    """answered: a gateway reply's last byte leaves once its record is committed."""

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str) -> str:
        scheme = v.partition("://")[0]
        if v and ("://" not in v or scheme not in ("redis", "rediss", "unix")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL, or empty")
        return v


class CredentialsConfig(_Section):
    dir: str = ""


class FusionConfig(_Section):
    method: Literal["majority", "weighted", "semantic", "synthesis"] = "majority"
    min_agreement: float = Field(0.66, ge=0, le=1)
    max_providers: int = Field(3, ge=2)
    similarity_threshold: float = Field(0.80, ge=0, le=1)
    embedding_provider: str = ""
    synthesizer: str = ""


class GatewayConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    max_body_mb: float = Field(10, gt=0)
    """Request bodies over this are refused with 413 while being read, before parsing."""
    read_timeout_s: float = Field(10, gt=0)
    """A caller must send a request's headers and body within this, or is disconnected."""
    max_connections: int = Field(1000, ge=1)
    """Inbound connections per worker; past it, the longest idle or incomplete are closed."""
    max_response_mb: float = Field(50, gt=0)
    """An upstream answer (or a stream's total) over this is an error, never read whole."""


class TelemetryConfig(_Section):
    otlp_endpoint: str = ""
    """An OTLP/HTTP collector's base URL (spans go to ``<it>/v1/traces``); empty: no traces."""
    service_name: str = Field("polyroute", min_length=1)
    """The ``service.name`` resource attribute the spans carry."""

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, not {v!r}")
        return v


class BudgetConfig(_Section):
    daily_usd: float | None = Field(None, ge=0, le=MAX_USD)
    monthly_usd: float | None = Field(None, ge=0, le=MAX_USD)
    alert_percents: tuple[Annotated[float, Field(gt=0, le=100)], ...] = (50, 75, 90)


class OptimizerConfig(_Section):
    """``[budget.optimizer]``: the defaults of ``budget optimize``, and the gateway's auto-adjust."""

    auto: bool = False
    interval_h: float = Field(24, gt=0)
    total_monthly_usd: float = Field(500, ge=0, le=MAX_USD)
    min_usd: float = Field(20, ge=0, le=MAX_USD)
    """Per provider, monthly."""
    max_usd: float = Field(300, ge=0, le=MAX_USD)

    @model_validator(mode="after")
    def _bounds(self) -> OptimizerConfig:
        if self.min_usd > self.max_usd:
            raise ValueError(f"min_usd ({self.min_usd:g}) is over max_usd ({self.max_usd:g})")
        return self


class GlobalBudgetConfig(BudgetConfig):
    optimizer: OptimizerConfig = OptimizerConfig()


class ProviderConfig(_Section):
    type: str
    base_url: str = ""
    api_key: str | None = None
    models: tuple[str, ...] = ()
    default_model: str | None = None
    fusion_weight: float = Field(1.0, ge=0)
    carbon_intensity: float | None = Field(None, ge=0)
    enabled: bool = True
    timeout_s: float | None = Field(None, gt=0)
    max_connections: int = Field(100, ge=1)
    """Open upstream connections at most; more calls wait up to their pool timeout."""
    rpm: int = Field(0, ge=0)
    """Requests (attempts) a minute to this provider, across replicas with Redis; 0: no limit."""
    tpm: int = Field(0, ge=0)
    """Tokens a minute (each held at its worst case, settled to the actual); 0: no limit."""
    headers: dict[str, str] = {}
    """Extra HTTP headers on every call (e.g. ``anthropic-version``, OpenRouter's ``HTTP-Referer``)."""
    budget: BudgetConfig | None = None

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if not is_provider_type(v):  # entry points are read only for a name no built-in has
            raise ValueError(unknown_type_message(v))
        return v

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, v: str | None) -> str | None:
        # never echo the value: a misplaced raw key must not land in an error message
        if v is None or v.startswith("env:"):
            return v
        if v.startswith("vault:"):
            if not valid_vault_id(v.removeprefix("vault:")):
                raise ValueError(
                    "bad vault credential id: use letters, digits, '_', '-', '.' "
                    "(starting with a letter or digit, at most 64)"
                )
            return v
        raise ValueError(
            "must be 'env:NAME' or 'vault:ID' (keys are never written in config files); "
            "omit it for keyless providers"
        )


class ModelConfig(_Section):
    provider_type: str | None = None
    input_usd_per_mtok: float | None = Field(None, ge=0)
    output_usd_per_mtok: float | None = Field(None, ge=0)
    cached_input_usd_per_mtok: float | None = Field(None, ge=0)
    cache_write_usd_per_mtok: float | None = Field(None, ge=0)
    cache_write_1h_usd_per_mtok: float | None = Field(None, ge=0)
    context_window: int | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)
    quality: float | None = Field(None, ge=0, le=1)
    capabilities: tuple[Capability, ...] | None = None
    params_b: float | None = Field(None, gt=0)
    api: Literal["chat", "responses"] | None = None


class RedactConfig(_Section):
    responses: bool = False
    """Mask answers too (and streamed text), not only what leaves."""


class HooksConfig(_Section):
    """``[hooks]``: the hooks every request runs through, in order (:mod:`polyroute.hooks`).
    A table ``[hooks.NAME]`` of a plugin hook holds its options (keyword arguments)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    enabled: tuple[str, ...] = ()
    timeout_s: float = Field(2, gt=0)
    """Each hook's time for each call: past it the request fails (500), never hangs."""
    redact: RedactConfig = RedactConfig()

    @model_validator(mode="after")
    def _options_of_enabled(self) -> HooksConfig:
        for name, value in (self.model_extra or {}).items():
            if not isinstance(value, dict):
                raise ValueError(f"{name}: unknown key")  # noqa: TRY004 (pydantic wants ValueError)
            if name not in self.enabled:
                raise ValueError(f"{name}: options of a hook not in hooks.enabled")
        if len(set(self.enabled)) != len(self.enabled):
            raise ValueError("enabled: a hook is listed twice")
        return self

    def options(self, name: str) -> dict[str, Any]:
        """The ``[hooks.NAME]`` table of a plugin hook (empty if none)."""
        return dict((self.model_extra or {}).get(name, {}))


class AlertConfig(_Section):
    """An ``[[alerts]]`` entry: a webhook the chosen events are posted to, in batches, off
    the request path (:mod:`polyroute.alerts`)."""

    url: str
    """``https://...`` (a secret: never logged), or ``env:NAME`` to read it from there."""
    events: tuple[str, ...] = Field(min_length=1)
    format: Literal["json", "slack"] = "json"
    batch_max: int = Field(20, ge=1, le=1000)
    """Events per POST, at most."""
    batch_s: float = Field(1.0, ge=0, le=3600)
    """How long the first event of a batch waits for others."""
    max_queue: int = Field(1000, ge=1, le=1_000_000)
    """Events waiting, at most: past it an event is dropped (and counted)."""
    timeout_s: float = Field(5, gt=0, le=300)
    """Each POST's."""
    retries: int = Field(5, ge=0, le=20)
    """Further tries of a POST that failed (exponential backoff with jitter)."""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        # the message never repeats the value: a webhook URL is a secret
        if v.startswith("env:"):
            if not v[4:]:
                raise ValueError("env: needs a variable name")
            return v
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(v)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("must be an http(s) URL or env:NAME")
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [k for k in v if k not in EVENT_KINDS]
        if unknown:
            raise ValueError(
                f"no event kind {', '.join(map(repr, unknown))} (kinds: {', '.join(EVENT_KINDS)})"
            )
        return v


class Settings(_Section):
    """The whole config file, validated."""

    router: RouterConfig = RouterConfig()
    health: HealthConfig = HealthConfig()
    storage: StorageConfig = StorageConfig()
    credentials: CredentialsConfig = CredentialsConfig()
    fusion: FusionConfig = FusionConfig()
    gateway: GatewayConfig = GatewayConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    hooks: HooksConfig = HooksConfig()
    alerts: tuple[AlertConfig, ...] = ()
    """``[[alerts]]``: webhooks posted the chosen events."""
    budget: GlobalBudgetConfig | None = None
    """The global budget: every provider's spend together."""
    providers: dict[str, ProviderConfig] = {}
    models: dict[str, ModelConfig] = {}


MASTER_KEY_ENV = "POLYROUTE_MASTER_KEY"


@dataclass(frozen=True, slots=True)
class _Unresolved:
    """Why a provider's key cannot be had: a short status and the error to raise."""

    status: str
    error: PolyrouteError


@dataclass(frozen=True, slots=True)
class Config:
    """Settings plus where they came from."""

    settings: Settings
    source: str
    """The file read, or ``"environment"`` for zero-config discovery, or ``"embedded"``."""
    env: Mapping[str, str] = field(repr=False)
    """Where ``env:`` keys and the master passphrase are read: never in a repr."""
    _vaults: dict[Path, Vault] = field(default_factory=dict, init=False, repr=False, compare=False)
    """The unlocked vault, once opened: unlocking runs scrypt (tens of ms)."""

    def catalog(self) -> Catalog:
        overrides = [
            ModelOverride(id=name, **m.model_dump(exclude_none=True))
            for name, m in self.settings.models.items()
        ]
        types = {spec.type for spec in self.settings.providers.values()}
        try:
            return Catalog.load(overrides, plugin_catalog(types), plugin_local_types(types))
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {exc}") from None

    def provider(self, pid: str) -> Provider:
        """The runtime provider ``pid``, key resolved; a clear error if it cannot be."""
        spec = self.settings.providers.get(pid)
        if spec is None:
            known = ", ".join(self.settings.providers) or "none"
            raise ConfigError(f"{self.source}: no provider {pid!r} (configured: {known})")
        return Provider(
            id=pid,
            type=spec.type,
            base_url=spec.base_url,
            api_key=self._key(pid, spec),
            models=spec.models,
            default_model=spec.default_model,
            timeout_s=spec.timeout_s or self.settings.router.timeout_s,
            headers=spec.headers,
            max_connections=spec.max_connections,
            max_response_bytes=int(self.settings.gateway.max_response_mb * MB),
            responses_models=self.catalog().responses_models(spec.type),
        )

    def key_status(self, pid: str) -> str:
        """``set``, ``set (vault)``, ``none`` (keyless) or what is wrong; never the key itself."""
        spec = self.settings.providers[pid]
        if spec.api_key is None:
            return "none"
        found = self._resolve(pid, spec.api_key)
        if isinstance(found, _Unresolved):
            return found.status
        return "set (vault)" if spec.api_key.startswith("vault:") else "set"

    def _key(self, pid: str, spec: ProviderConfig) -> Secret | None:
        if spec.api_key is None:
            return None
        found = self._resolve(pid, spec.api_key)
        if isinstance(found, _Unresolved):
            raise found.error
        return found

    def _resolve(self, pid: str, ref: str) -> Secret | _Unresolved:
        where = f"{self.source}: providers.{pid}.api_key"
        if ref.startswith("env:"):
            name = ref.removeprefix("env:")
            value = self.env.get(name, "")
            if not value:
                return _Unresolved(
                    f"missing (${name} is not set)", ConfigError(f"{where}: ${name} is not set")
                )
            return Secret(value)
        cred = ref.removeprefix("vault:")
        where = f"{where}: vault credential {cred!r}"
        if not self.env.get(MASTER_KEY_ENV):
            return _Unresolved(
                f"locked (${MASTER_KEY_ENV} is not set)",
                CredentialError(
                    f"{where} is locked: set ${MASTER_KEY_ENV} to the vault's master passphrase"
                ),
            )
        missing = _Unresolved(
            f"missing (no credential {cred!r} in the vault)",
            CredentialError(
                f"{where} not found in {self.vault_dir()}; run `polyroute credentials set {cred}`"
            ),
        )
        if not self.vault_exists():
            return missing
        try:
            vault = self.vault()
        except WrongPassphraseError as exc:
            return _Unresolved(
                "error (wrong master passphrase)",
                WrongPassphraseError(f"{where}: {exc}; check ${MASTER_KEY_ENV}"),
            )
        except CredentialError as exc:
            return _Unresolved("error (vault unreadable)", CredentialError(f"{where}: {exc}"))
        try:
            if cred not in vault.list():
                return missing
            return vault.get(cred)
        except CredentialError:  # the id exists and is valid: what is left is tampering
            return _Unresolved(
                "error (tampered or corrupt credential)",
                CredentialError(
                    f"{where} is tampered or corrupt; set it again with "
                    f"`polyroute credentials set {cred}`"
                ),
            )
        except OSError as exc:
            return _Unresolved(
                "error (vault unreadable)",
                CredentialError(f"{where}: cannot read the vault: {exc}"),
            )

    # -- the vault ---------------------------------------------------------

    def vault_dir(self) -> Path:
        """``[credentials] dir``, else ``$POLYROUTE_HOME/credentials``."""
        if self.settings.credentials.dir:
            return Path(self.settings.credentials.dir).expanduser()
        return polyroute_home(self.env) / "credentials"

    def vault_exists(self) -> bool:
        return (self.vault_dir() / "vault.json").is_file()  # the vault's metadata file

    def vault(self, *, create: bool = False) -> Vault:
        """The vault, unlocked with ``$POLYROUTE_MASTER_KEY`` (once per config: scrypt is slow).

        Without ``create``, a vault that does not exist yet is an error rather
        than a new empty one made as a side effect of reading.
        """
        directory = self.vault_dir()
        cached = self._vaults.get(directory)
        if cached is not None:
            return cached
        if not self.env.get(MASTER_KEY_ENV):
            raise CredentialError(
                f"the vault is locked: set ${MASTER_KEY_ENV} to its master passphrase"
            )
        if not create and not self.vault_exists():
            raise CredentialError(
                f"no vault in {directory} yet; add a key with `polyroute credentials set ID`"
            )
        try:
            vault = vault_for(directory, self.env)
        except (OSError, ValueError) as exc:  # unreadable directory, absurd KDF parameters
            raise CredentialError(f"cannot open the vault in {directory}: {exc}") from None
        self._vaults[directory] = vault
        return vault

    def enabled(self) -> list[str]:
        return [pid for pid, p in self.settings.providers.items() if p.enabled]


def load(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Find and load the config (see module docs); zero-config discovery when there is none."""
    env = os.environ if env is None else env
    found = find_config(path, env)
    if found is None:
        return Config(discover(env), "environment", env)
    return Config(parse(found), str(found), env)


def find_config(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file")
        return p
    if env.get("POLYROUTE_CONFIG"):
        p = Path(env["POLYROUTE_CONFIG"])
        if not p.is_file():
            raise ConfigError(f"{p}: no such config file (from $POLYROUTE_CONFIG)")
        return p
    local = Path("polyroute.toml")
    if local.is_file():
        return local
    xdg = user_config_path(env)
    return xdg if xdg.is_file() else None


def user_config_path(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/polyroute/config.toml``, the last place :func:`find_config` looks."""
    return Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "polyroute" / "config.toml"


def parse(path: Path) -> Settings:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return validate(data, str(path))


def validate(data: Mapping[str, Any], source: str) -> Settings:
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise ConfigError(f"{source}: {where}: {msg}") from None
    for pid, spec in settings.providers.items():
        if spec.default_model and spec.models and not _listed(spec.default_model, spec.models):
            raise ConfigError(
                f"{source}: providers.{pid}.default_model: {spec.default_model!r} is not in models"
            )
    baseline = settings.router.carbon_baseline
    if baseline and baseline not in settings.providers:
        raise ConfigError(
            f"{source}: router.carbon_baseline: {baseline!r} is not a configured provider"
        )
    opt = settings.budget.optimizer if settings.budget else None
    if opt is not None and opt.auto:  # the gateway will apply these bounds unattended
        n = sum(p.enabled for p in settings.providers.values())
        if n and not n * opt.min_usd <= opt.total_monthly_usd <= n * opt.max_usd:
            raise ConfigError(
                f"{source}: budget.optimizer: {n} providers between min_usd "
                f"{opt.min_usd:g} and max_usd {opt.max_usd:g} cannot share "
                f"total_monthly_usd {opt.total_monthly_usd:g}"
            )
    return settings


def _listed(model: str, entries: Sequence[str]) -> bool:
    """Named by ``models``, literally or by a pattern (``"gpt-5*"``, ``"*"``)."""
    return any(model == e or fnmatchcase(model, e) for e in entries)


# env var -> (provider id, type, default model)
_DISCOVERY: tuple[tuple[str, str, str, str], ...] = (
    ("OPENAI_API_KEY", "openai", "openai", "gpt-4o-mini"),
    ("ANTHROPIC_API_KEY", "anthropic", "anthropic", "claude-haiku-4-5"),
    ("GEMINI_API_KEY", "google", "google", "gemini-2.5-flash"),
    ("GOOGLE_API_KEY", "google", "google", "gemini-2.5-flash"),
    ("MISTRAL_API_KEY", "mistral", "mistral", "mistral-small-latest"),
)


def discover(env: Mapping[str, str]) -> Settings:
    """Zero-config: a provider per vendor key found in the environment, and a reachable Ollama."""
    providers: dict[str, dict[str, Any]] = {}
    for var, pid, ptype, model in _DISCOVERY:
        if env.get(var) and pid not in providers:
            providers[pid] = {"type": ptype, "api_key": f"env:{var}", "default_model": model}
    host = ollama_host(env)
    if _reachable(host):
        providers["ollama"] = {"type": "ollama", "base_url": host, "default_model": "llama3.2"}
    return validate({"providers": providers}, "environment")


def nothing_configured(env: Mapping[str, str]) -> ConfigError:
    """Zero-config discovery found no provider: where it looked, and how to configure one."""
    local = Path("polyroute.toml").absolute()
    keys = ", ".join(f"${var}" for var, *_ in _DISCOVERY)
    return ConfigError(
        f"nothing is configured: no config file ({local} or {user_config_path(env)}), "
        f"no provider key in the environment, no Ollama at {ollama_host(env)}\n"
        f"  set one of {keys}, start Ollama ($OLLAMA_HOST), or write a config file "
        "(or pass --config PATH / set $POLYROUTE_CONFIG)"
    )


def ollama_host(env: Mapping[str, str]) -> str:
    host = env.get("OLLAMA_HOST") or "http://localhost:11434"
    return host if "://" in host else f"http://{host}"


def _reachable(url: str, timeout_s: float = 0.3) -> bool:
    """A TCP connect, no request: cheap enough to run on every zero-config start."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def polyroute_home(env: Mapping[str, str] | None = None) -> Path:
    """Where data lives: ``$POLYROUTE_HOME``, else the platform's user data dir."""
    env = os.environ if env is None else env
    if env.get("POLYROUTE_HOME"):
        return Path(env["POLYROUTE_HOME"])
    from platformdirs import user_data_dir

    return Path(user_data_dir("polyroute", appauthor=False))
