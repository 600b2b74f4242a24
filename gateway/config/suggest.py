"""Did you mean" for unknown config keys: the nearest valid key at the same YAML path (pure, no I/O)."""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel

from gateway.config.schema import GatewayConfig


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold: ``X``, ``X | None``, ``list[X]``, ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):  # X | None, list[X], dict[str, X], Annotated[X, ...]
        found.extend(_models_in(arg))
    return found


def _keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def valid_keys(parent: tuple[str | int, ...]) -> list[str]:
    """The keys allowed in the mapping at ``parent`` (``("routes", 0, "auth")``), or [] if unknown."""
    models: list[type[BaseModel]] = [GatewayConfig]
    free_key = False  # the next part names a dict entry (``providers.<name>``), not a field
    for part in parent:
        if isinstance(part, int) or free_key:
            free_key = False  # a list index or a dict key: the element model was taken already
            continue
        nxt: list[type[BaseModel]] = []
        for model in models:
            by_key = {field.alias or name: field for name, field in model.model_fields.items()}
            field = by_key.get(part)
            if field is None:
                continue
            nxt.extend(_models_in(field.annotation))
            free_key = free_key or _is_dict(field.annotation)
        models = nxt
    keys: list[str] = []
    for model in models:
        keys.extend(k for k in _keys(model) if k not in keys)
    return keys


def _is_dict(annotation: Any) -> bool:
    if typing.get_origin(annotation) is dict:
        return True
    return any(_is_dict(arg) for arg in typing.get_args(annotation))


def suggestion(loc: tuple[str | int, ...]) -> str | None:
    """The nearest valid key for the unknown key at ``loc`` (its last part), or None when none is close."""
    if not loc or not isinstance(loc[-1], str):
        return None
    close = difflib.get_close_matches(loc[-1], valid_keys(loc[:-1]), n=1, cutoff=0.6)
    return close[0] if close else None
