"""The base of every API body: camelCase on the wire (seed contract), unknown fields refused,
and no NUL characters anywhere in it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

# The error type `api.handlers` recognises to report the offending field's path.
NUL_ERROR = "nul_character"


def _nul_path(value: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The path to the first string holding U+0000, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _nul_path(item, (*path, str(key)))
            if found is not None or (isinstance(key, str) and "\x00" in key):
                return found or (*path, str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _nul_path(item, (*path, str(index)))
            if found is not None:
                return found
    return None


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_nul(cls, data: Any) -> Any:
        # PostgreSQL text cannot hold U+0000: let through, it would fail as a 500 at insert time.
        # A model validator (not a "*" field validator) keeps discriminated unions working.
        path = _nul_path(data)
        if path is not None:
            raise PydanticCustomError(
                NUL_ERROR, "must not contain NUL (U+0000) characters", {"field": ".".join(path)}
            )
        return data
