"""Base model configurations shared by every contract."""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


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
