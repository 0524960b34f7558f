"""Command-line flags generated from the settings models, so no flag list is kept by hand: every
field but the secrets becomes `--field-name`, with its docstring as help and the RVS_ variable it
falls back to.

Values stay strings here; pydantic converts and validates them with the same rules as the
environment variables (argparse only knows the choices of a Literal and the on/off of a bool).
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo


def add_settings_flags(
    parser: argparse.ArgumentParser,
    classes: Iterable[type[BaseModel]],
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
) -> None:
    """One flag per field of `classes` (a field shared by several once; `only`: just these), grouped
    under the class that declares it (common, model, store, bus, then each service's own)."""
    wanted = set(only) if only is not None else None
    seen: set[str] = set(skip)
    groups: dict[type, argparse._ArgumentGroup] = {}
    for cls in classes:
        for name, field in cls.model_fields.items():
            if name in seen or (wanted is not None and name not in wanted) or _is_secret(field):
                continue
            seen.add(name)
            owner = _declaring_class(cls, name)
            if owner not in groups:
                doc = (owner.__doc__ or "").strip().splitlines()
                title = owner.__name__.removesuffix("Settings").lower()
                groups[owner] = parser.add_argument_group(f"{title}: {doc[0].rstrip('.')}" if doc else title)
            groups[owner].add_argument(_flag(name), dest=name, default=None, help=_help(name, field), **_kind(field))


def overrides(args: argparse.Namespace, cls: type[BaseModel]) -> dict[str, Any]:
    """The flags given on the command line that are fields of `cls` (the rest come from the environment)."""
    return {k: v for k, v in vars(args).items() if v is not None and k in cls.model_fields}


def _is_secret(field: FieldInfo) -> bool:
    """Secrets come from the environment only: a flag would show them to everyone who runs `ps`."""
    return SecretStr in (field.annotation, *typing.get_args(field.annotation))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _declaring_class(cls: type[BaseModel], name: str) -> type:
    for base in reversed(cls.__mro__):
        if name in getattr(base, "__annotations__", {}):
            return base
    return cls


def _help(name: str, field: FieldInfo) -> str:
    text = " ".join((field.description or "").split())
    first = text.split(". ")[0].rstrip(".")
    return f"{first} (env: RVS_{name.upper()})".replace("%", "%%")


def _kind(field: FieldInfo) -> dict[str, Any]:
    annotation = field.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0] if len(args) == 1 else annotation
        args = list(typing.get_args(annotation))
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(annotation) is Literal:
        return {"choices": [str(a) for a in args], "metavar": "|".join(str(a) for a in args)}
    if typing.get_origin(annotation) is dict:  # a JSON object, as in the environment variable
        return {"type": _json_object, "metavar": "JSON"}
    if typing.get_origin(annotation) is tuple:
        return {"nargs": "*" if Ellipsis in args else len(args), "metavar": "VALUE"}
    return {"metavar": _METAVARS.get(annotation, "VALUE")}


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


_METAVARS: dict[Any, str] = {str: "TEXT", int: "N", float: "X", Path: "PATH"}
