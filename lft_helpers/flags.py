"""Command-line flags generated from a dataclass, so each default and help text exists once.

Every field becomes one flag, described by its metadata:

- ``help`` (required): the flag's help text.
- ``flag``: the flag's name (default ``--field-name``); ``None`` gives the field no flag.
- ``choices``: the allowed values.
- ``type``: a callable that parses the flag's text, instead of the annotation's type.

The type comes from the annotation: ``int``, ``float``, ``str``, ``X | None`` as ``X``, and
``tuple[X, ...]`` (or ``list[X]``) as a flag that may repeat. A ``bool`` field is a switch:
``--name`` sets it when its default is False (or None), ``--no-name`` clears it when its default
is True. No flag has an argparse default: a flag not given reads None, and `values_from_args`
returns only the flags given, so the dataclass (or a preset applied before it) fills in the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def option(default, help: str, **meta):
    """A dataclass field with its command-line help (and optionally `flag`, `choices` or
    `type`) in its metadata, where `add_dataclass_flags` reads them."""
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def _strip_optional(annotation):
    """`X | None` and `Optional[X]` as X; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def flag_of(field: dataclasses.Field) -> str | None:
    """The flag that sets `field` (None: the field has no flag)."""
    if "flag" in field.metadata:
        return field.metadata["flag"]
    prefix = "--no-" if _default(field) is True else "--"
    return prefix + field.name.replace("_", "-")


def _render(value) -> str:
    if isinstance(value, (tuple, list)):
        return ", ".join(str(v) for v in value)
    return str(value)


def add_dataclass_flags(
    parser: argparse.ArgumentParser,
    cls,
    *,
    skip: typing.Collection[str] = (),
    show_defaults: bool = True,
    describe_default: typing.Callable[[str, object], str | None] | None = None,
) -> list[str]:
    """Add a flag for each field of dataclass `cls` to `parser`; return the fields given one.

    `skip` leaves fields out (a caller that adds its own flag for them). With `show_defaults`,
    each help text ends with the field's default where it has a meaningful one (not None, not
    a switch); `describe_default(name, default)` words it instead where another source (a
    preset) decides the real default (None: say nothing).
    """
    hints = typing.get_type_hints(cls)
    added = []
    for field in dataclasses.fields(cls):
        flag = flag_of(field)
        if field.name in skip or flag is None:
            continue
        if "help" not in field.metadata:
            raise TypeError(f"{cls.__name__}.{field.name} has no help text in its metadata.")
        default = _default(field)
        help_text = field.metadata["help"]
        kwargs: dict = {"dest": field.name, "default": None}
        annotation = _strip_optional(hints[field.name])
        if annotation is bool:
            kwargs["action"] = "store_false" if default is True else "store_true"
        else:
            origin = typing.get_origin(annotation)
            if "type" in field.metadata:
                kwargs["type"] = field.metadata["type"]
            elif origin in (tuple, list):
                kwargs["action"] = "append"
                kwargs["type"] = typing.get_args(annotation)[0]
            elif annotation in (int, float):
                kwargs["type"] = annotation
            if "choices" in field.metadata:
                kwargs["choices"] = list(field.metadata["choices"])
            else:  # `--lr LR`, not `--lr LEARNING_RATE`; choices show themselves
                kwargs["metavar"] = flag.lstrip("-").replace("-", "_").upper()
            shown = None
            if describe_default is not None:
                shown = describe_default(field.name, default)
            elif default is not None and default != ():
                shown = _render(default)
            if show_defaults and shown:
                help_text = f"{help_text} (default: {shown})"
        parser.add_argument(flag, help=help_text, **kwargs)
        added.append(field.name)
    return added


def values_from_args(cls, args: argparse.Namespace) -> dict:
    """The fields of `cls` whose flags were given on the command line, by field name.

    A repeated flag's list becomes a tuple where the field is a tuple.
    """
    hints = typing.get_type_hints(cls)
    given = {}
    for field in dataclasses.fields(cls):
        value = getattr(args, field.name, None)
        if value is None:
            continue
        if (
            isinstance(value, list)
            and typing.get_origin(_strip_optional(hints[field.name])) is tuple
        ):
            value = tuple(value)
        given[field.name] = value
    return given


def names_parser(known, what: str):
    """An argparse `type` for a comma-separated list of `known` names (`what` names them in
    the error): each name once given, in the order given."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        unknown = [n for n in names if n not in known]
        if not names or unknown:
            raise argparse.ArgumentTypeError(
                f"`{text}`: unknown {what} {unknown}; choose from {', '.join(known)}"
            )
        return names

    return parse
