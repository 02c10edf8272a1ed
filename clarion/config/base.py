"""What every settings section shares: the section base class, project-relative paths, names."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    ValidationInfo,
)

ENV_PREFIX = "CLARION_"
SHIPPED = Path(__file__).resolve().parents[2]  # the dbt project and the suites ship beside the package
CONFIG_ENV = "CLARION_CONFIG"  # names the file; not an override
TEST_ENV_PREFIX = "CLARION_TEST_"  # fault points of the reliability tests (clarion.runtime.checkpoint)
DEFAULT_FILE = "clarion.yaml"


def _under_root(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the directory holding clarion.yaml (or the cwd without one)."""
    root = (info.context or {}).get("root")
    value = value.expanduser()
    return value if value.is_absolute() or root is None else Path(root) / value


ProjectPath = Annotated[Path, AfterValidator(_under_root)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"  # the name of an environment variable


def not_a_setting(value: str | None, what: str, example: str) -> str | None:
    """A variable holding a secret must not start with CLARION_: Clarion reads those as settings."""
    if value is not None and value.upper().startswith("CLARION_"):
        raise ValueError(
            f"{value} starts with CLARION_, which Clarion reads as a setting override: name the "
            f"{what}'s variable without that prefix (e.g. {example})"
        )
    return value


def comma_list(value: Any) -> Any:
    """A list setting given as one string (an environment override): a,b -> [a, b]."""
    if isinstance(value, str):  # CLARION_REPORT__RECIPIENTS=a@x.com,b@y.com
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def email_address(value: str) -> str:
    from email.utils import parseaddr

    _, addr = parseaddr(value)
    if "@" not in addr or addr.startswith("@") or addr.endswith("@") or " " in addr:
        raise ValueError(
            f"{value!r} is not an e-mail address (name@example.com or 'Name <name@example.com>')"
        )
    return value
