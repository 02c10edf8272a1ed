"""The ``alerts:`` section: who hears about a failed or late daily run, a failed quality gate, a model
not promoted, or a fairness flag, and how (e-mail through the report's SMTP settings, webhooks).
Nothing configured: no alert is sent, and `clarion status` and the run summary say alerts are off."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from clarion.config.base import ENV_NAME, Section, comma_list, email_address, not_a_setting

AlertEvent = Literal["failed_run", "late_run", "gate_failed", "model_not_promoted", "fairness_flag"]
EVENTS: tuple[str, ...] = AlertEvent.__args__  # type: ignore[attr-defined]


class AlertsSettings(Section):
    """Alerts. E-mail goes through the ``report:`` section's SMTP server, sender, STARTTLS, login
    variables and retries; webhooks receive a JSON body (docs/alerts.md), signed when a secret is set."""

    email: list[str] = Field(
        default_factory=list, description="who receives alert e-mails [none: no alert e-mail]"
    )
    webhooks: list[str] = Field(
        default_factory=list, description="URLs that receive each alert as a JSON POST [none]"
    )
    webhook_secret_env: str | None = Field(
        None,
        pattern=ENV_NAME,
        description="environment variable holding a secret: each webhook body is then signed with "
        "HMAC-SHA256 in the X-Clarion-Signature header [none: unsigned]",
    )
    events: list[AlertEvent] = Field(
        default_factory=lambda: list(EVENTS),
        description="which events alert: failed_run, late_run, gate_failed, model_not_promoted, "
        "fairness_flag [all]",
    )
    late_after_minutes: float = Field(
        120,
        gt=0,
        le=24 * 60,
        description="a run of the daily deployment that has not completed this many minutes after it "
        "was due is late (a Prefect automation, `clarion alerts setup`)",
    )
    late_deployment: str = Field(
        "clarion-pipeline/daily",
        min_length=3,
        pattern=r"^[^/]+/[^/]+$",
        description="the deployment (flow/deployment) the late-run automation watches",
    )
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="webhook connect and reply timeout"
    )
    webhook_retries: int = Field(2, ge=0, le=10, description="retries of a webhook that failed to answer 2xx")
    retry_seconds: float = Field(2.0, ge=0, le=600, description="pause between webhook attempts")

    @field_validator("email", "webhooks", "events", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return comma_list(value)  # CLARION_ALERTS__EMAIL=a@x.com,b@y.com

    @field_validator("email")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [email_address(v) for v in value]

    @field_validator("webhooks")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        from urllib.parse import urlsplit

        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL (https://hooks.example.com/clarion)")
        return value

    @field_validator("webhook_secret_env")
    @classmethod
    def _not_a_setting(cls, value: str | None) -> str | None:
        return not_a_setting(value, "webhook secret", "ALERTS_WEBHOOK_SECRET")

    @property
    def configured(self) -> bool:
        """Alerts are on when some channel is set and some event chosen."""
        return bool((self.email or self.webhooks) and self.events)

    def channels(self) -> list[str]:
        return (["email"] if self.email else []) + (["webhook"] if self.webhooks else [])
