"""Every setting of the service in one validated class; a bad value stops the process with one line."""

from __future__ import annotations

import os
import sys
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from service.repo_url import allowed_host

EXIT_BAD_CONFIG = 2
CONFIG_FILE_VARIABLE = "AST_CONFIG"


class ConfigFileError(ValueError):
    """AST_CONFIG names a file that cannot be read as this service's settings."""


class ConfigFile(TomlConfigSettingsSource):
    """`AST_CONFIG=/path/config.toml`: the same settings as the environment, keys in either case
    (`postgres_url` or `POSTGRES_URL`); an unknown key is refused, a typo must not pass unseen."""

    def __init__(self, settings_cls: type[BaseSettings], path: str) -> None:
        if not os.path.isfile(path):
            raise ConfigFileError(f"{CONFIG_FILE_VARIABLE}: no such file: {path}")
        try:
            super().__init__(settings_cls, toml_file=path)
        except tomllib.TOMLDecodeError as error:
            raise ConfigFileError(f"{CONFIG_FILE_VARIABLE}: {path} is not valid TOML: {error}") from None
        self.toml_data = {key.lower(): value for key, value in self.toml_data.items()}
        unknown = sorted(set(self.toml_data) - set(settings_cls.model_fields))
        if unknown:
            raise ConfigFileError(f"{CONFIG_FILE_VARIABLE}: {path}: unknown setting {unknown[0].upper()}")
        self.init_kwargs = self.toml_data


class Settings(BaseSettings):
    """The contract's environment, plus a few internal knobs with safe defaults."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    postgres_url: str = "postgresql://ast@127.0.0.1:5432/ast"
    rabbit_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    rabbit_vhost: str = Field(default="", max_length=255)
    # Optional: the dashboard reads each queue's unacked count from it (AMQP has no such count).
    rabbit_management_url: str = Field(default="", max_length=2000)
    rabbit_prefetch: int = Field(default=1, ge=1, le=50)
    rabbit_delivery_limit: int = Field(default=5, ge=1, le=100)
    max_retries: int = Field(default=3, ge=0, le=50)
    retry_base_ms: int = Field(default=1000, ge=1, le=3_600_000)
    job_timeout_ms: int = Field(default=900_000, ge=100, le=86_400_000)
    worker_id: str = ""
    # One consumer per job queue per unit (see Worker._session). A job that may crash its worker
    # (one delivered before) runs alone, so the jobs beside it lose no run (service/worker/slots.py).
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    worker_lease_ms: int = Field(default=10_000, ge=500, le=600_000)
    temp_dir: Path = Path("/tmp/ast-service")
    artifacts_dir: Path = Path("/tmp/ast-artifacts")
    allow_local_repos: bool = False
    repo_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    clone_timeout_ms: int = Field(default=300_000, ge=1000, le=86_400_000)
    clone_max_bytes: int = Field(default=1 << 30, ge=1 << 20, le=1 << 40)
    git_credential_helper: str = Field(default="", max_length=1000)
    worker_health_host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    worker_health_port: int = Field(default=9100, ge=0, le=65535)
    worker_live_after_s: float = Field(default=10.0, gt=0, le=3600)
    shutdown_grace_ms: int = Field(default=30_000, ge=0, le=3_600_000)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    api_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024)
    stream_max_seconds: int = Field(default=300, ge=1, le=86_400)
    stream_max_per_client: int = Field(default=20, ge=1, le=10_000)
    relay_in_api: bool = True
    relay_batch_size: int = Field(default=100, ge=1, le=10_000)
    relay_poll_ms: int = Field(default=200, ge=10, le=60_000)
    # After a NOTIFY wakes it, the relay waits this long so the next few commits join its batch.
    relay_linger_ms: int = Field(default=5, ge=0, le=1_000)
    reconcile_interval_ms: int = Field(default=5_000, ge=100, le=3_600_000)
    reconcile_pending_after_ms: int = Field(default=30_000, ge=100, le=86_400_000)
    reconcile_lease_grace_ms: int = Field(default=15_000, ge=0, le=86_400_000)
    # Terminal tasks that ended longer ago are deleted by the relay (service.retention); 0 keeps all.
    retention_days: int = Field(default=30, ge=0, le=36_500)
    retention_batch_size: int = Field(default=500, ge=1, le=10_000)
    retention_interval_ms: int = Field(default=60_000, ge=100, le=86_400_000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the AST_CONFIG file: the environment wins."""
        path = os.environ.get(CONFIG_FILE_VARIABLE, "").strip()
        if not path:
            return init_settings, env_settings
        return init_settings, env_settings, ConfigFile(settings_cls, path)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [token.strip() for token in value.split(",") if token.strip()]
        return value

    @field_validator("repo_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        """Internal git servers a clone may reach although they resolve to a private address."""
        if isinstance(value, str):
            value = [entry for entry in value.split(",") if entry.strip()]
        if isinstance(value, list):
            return [allowed_host(str(entry)) for entry in value]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("postgres_url")
    @classmethod
    def _postgres_scheme(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("rabbit_url")
    @classmethod
    def _amqp_scheme(cls, value: str) -> str:
        """One URL, or several comma-separated (the nodes of a cluster); each must be AMQP."""
        urls = [part.strip() for part in value.split(",")]
        if not all(url.startswith(("amqp://", "amqps://")) for url in urls):
            raise ValueError("must be an amqp:// or amqps:// URL, or several separated by commas")
        return value


def describe_error(error: ValidationError) -> str:
    """One line naming the first bad variable, as an operator reads it."""
    first = error.errors()[0]
    variable = str(first["loc"][0]).upper() if first["loc"] else "?"
    return f"invalid configuration: {variable}: {first['msg']}"


@lru_cache(maxsize=1)
def load_settings() -> Settings:
    return Settings()


def settings_or_exit() -> Settings:
    """Entry points call this first: a bad variable prints one line on stderr and exits 2."""
    try:
        return load_settings()
    except ValidationError as error:
        print(describe_error(error), file=sys.stderr)
    except ConfigFileError as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_CONFIG)
