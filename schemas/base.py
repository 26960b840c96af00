"""Base model configurations shared by every contract."""

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class Contract(BaseModel):
    """An internal contract: frozen, snake_case, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ApiModel(BaseModel):
    """An HTTP body: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        """NUL never belongs in text, and PostgreSQL cannot store it: refuse it as a field error."""
        if _has_nul(value):
            raise ValueError("must not contain NUL characters")
        return value
