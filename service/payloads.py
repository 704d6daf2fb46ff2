"""Payload schemas per task type: the API validates at submit (422), the worker again on receipt."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from service.models import TaskType
from service.repo_url import redact_url, validate_ref, validate_repo_url

_ALLOW_LOCAL_REPOS = "allow_local_repos"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_max_length=4096)

    def stored(self) -> dict[str, Any]:
        """The payload as `tasks.payload` and job messages keep it: the fields sent, by their wire names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class WaitForEvent(_Payload):
    type: str = Field(min_length=1, max_length=200)
    key: str = Field(min_length=1, max_length=500)


class SimulatePayload(_Payload):
    """A job whose behaviour the test chooses; `failAttempts` bounds how many attempts misbehave."""

    duration_ms: int = Field(default=0, ge=0, le=3_600_000, alias="durationMs")
    steps: int = Field(default=1, ge=1, le=1000)
    outcome: Literal["success", "retryable", "terminal", "crash", "hang"] = "success"
    fail_attempts: int | None = Field(default=None, ge=0, le=1000, alias="failAttempts")
    wait_for_event: WaitForEvent | None = Field(default=None, alias="waitForEvent")
    timeout_ms: int | None = Field(default=None, ge=100, le=86_400_000, alias="timeoutMs")


class RepositoryPayload(_Payload):
    """`stored()` keeps `repoUrl` with its credentials redacted: a secret is never written anywhere.

    The worker then clones the redacted URL without the `***` placeholder (see
    `service.repo_url.clone_url`), so a private https repository authenticates through the
    worker's own git credential helper (`GIT_CREDENTIAL_HELPER`), and ssh through its agent.
    """

    repo_url: str = Field(min_length=1, max_length=2048, alias="repoUrl")
    ref: str | None = Field(default=None, min_length=1, max_length=255)

    @field_validator("repo_url")
    @classmethod
    def _safe_url(cls, value: str, info: ValidationInfo) -> str:
        allow_local = bool((info.context or {}).get(_ALLOW_LOCAL_REPOS, False))
        return validate_repo_url(value, allow_local=allow_local)

    @field_validator("ref")
    @classmethod
    def _safe_ref(cls, value: str | None) -> str | None:
        return None if value is None else validate_ref(value)

    def stored(self) -> dict[str, Any]:
        return {**super().stored(), "repoUrl": redact_url(self.repo_url)}


class ImpactPayload(_Payload):
    repository_task_id: str = Field(
        alias="repositoryTaskId",
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    )
    changed_files: list[str] = Field(alias="changedFiles", min_length=1, max_length=10_000)


PAYLOAD_MODELS: dict[TaskType, type[_Payload]] = {
    TaskType.SIMULATE: SimulatePayload,
    TaskType.INITIALIZE_REPOSITORY: RepositoryPayload,
    TaskType.INITIALIZE_IMPACT_ANALYSIS: ImpactPayload,
}


def parse_payload(task_type: TaskType, payload: Any, *, allow_local_repos: bool = False) -> _Payload:
    """Raises pydantic's ValidationError (and ValueError) on a bad payload.

    `allow_local_repos` (`Settings.allow_local_repos`) lets a repoUrl name a local repository.
    """
    context = {_ALLOW_LOCAL_REPOS: allow_local_repos}
    return PAYLOAD_MODELS[task_type].model_validate(payload, context=context)


__all__ = [
    "PAYLOAD_MODELS",
    "ValidationError",
    "parse_payload",
    "SimulatePayload",
    "RepositoryPayload",
    "ImpactPayload",
    "WaitForEvent",
]
