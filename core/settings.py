"""Settings as frozen dataclasses whose fields declare their own command-line flag (standard library only).

A spec class (:class:`core.embed.spec.EmbedSpec`, :class:`core.classify.spec.FitSpec`) is the one declaration of
a group of settings: each field's default, flag, help and choices. From it this module makes the argparse
arguments (:func:`add_arguments`), the spec of parsed arguments (:func:`from_args`) and the argv that gives the
same spec back (:func:`to_argv`), so a front end that builds a spec (the QGIS plugin) can run
``python -m core.classify`` with exactly those settings. Values are checked once, by the spec's
``__post_init__``, with messages (:func:`fail`, :func:`check_choices`) that name the flag and what it takes.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, NoReturn, Sequence

from .errors import SoftConError

Choices = Sequence[str] | Callable[[], Sequence[str]] | None


@dataclass(frozen=True)
class Flag:
    """How one setting appears on a command line.

    Attributes:
        flag: the option, e.g. ``--batch-size``; a boolean setting's flag turns it from its default to the other
            value (``--random-init`` sets ``pretrained`` to False).
        help: one line for ``--help`` (the default and the choices are appended).
        choices: the allowed values, or a function that lists them when asked (registries that grow).
        parse: text -> value (``int``, ``float``, or a function that raises SoftConError with its own message).
        show: value -> text, the inverse of ``parse``.
    """

    flag: str
    help: str
    choices: Choices = None
    parse: Callable[[str], Any] = str
    show: Callable[[Any], str] = str
    metavar: str | None = None

    def allowed(self) -> tuple[str, ...] | None:
        """The choices now (a registry may have grown since the class was defined)."""
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)


def setting(default: Any, flag: str, help: str, *, choices: Choices = None,  # noqa: A002 - argparse's word
            parse: Callable[[str], Any] = str, show: Callable[[Any], str] = str, metavar: str | None = None) -> Any:
    """A spec field: its default, declared here once, and its command-line :class:`Flag`."""
    return field(default=default, metadata={"cli": Flag(flag, help, choices, parse, show, metavar)})


def entries(source: Callable[[], Iterable[Any]]) -> Any:
    """A spec field holding named values whose flags come from a registry (a classifier's ``k``, ``temperature``).

    ``source()`` lists objects with ``name``, ``default`` and ``cli`` (a :class:`Flag`); the field's value is a
    sorted tuple of (name, value) pairs without the defaults, so equal settings compare equal.
    """
    return field(default=(), metadata={"entries": source})


def flags(cls: type) -> dict[str, Flag]:
    """Field name -> :class:`Flag` of a spec class."""
    return {f.name: f.metadata["cli"] for f in dataclasses.fields(cls) if "cli" in f.metadata}


def default(cls: type, name: str) -> Any:
    """The declared default of field ``name``."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def flag_of(cls: type, name: str) -> str:
    """The command-line flag of field ``name`` (for messages)."""
    return flags(cls)[name].flag


def fail(cls: type, name: str, rule: str, value: Any) -> NoReturn:
    """Raise the one message for a bad value: ``--batch-size must be at least 1, not -1.``"""
    raise SoftConError(f"{flag_of(cls, name)} {rule}, not {value!r}.")


def check_choices(spec: Any) -> None:
    """Every field with choices holds one of them (else a message naming the flag and the choices)."""
    for name, fl in flags(type(spec)).items():
        allowed = fl.allowed()
        value = getattr(spec, name)
        if allowed is not None and value not in allowed:
            raise SoftConError(f"Unknown {fl.flag} {value!r}; use one of: {', '.join(allowed)}.")


def _entry_fields(cls: type) -> dict[str, Callable[[], Iterable[Any]]]:
    return {f.name: f.metadata["entries"] for f in dataclasses.fields(cls) if "entries" in f.metadata}


def _help(fl: Flag, value: Any) -> str:
    text = fl.help
    allowed = fl.allowed()
    if allowed is not None:
        text += f"; one of: {', '.join(allowed)}"
    if value is not None and not isinstance(value, bool):
        text += f" (default: {fl.show(value)})"
    return text


def _add(parser: Any, dest: str, fl: Flag, value: Any) -> None:
    if isinstance(value, bool):  # the flag switches away from the default
        parser.add_argument(fl.flag, dest=dest, action="store_false" if value else "store_true", help=fl.help)
    else:  # None = not given: the spec's own default applies, declared once in the class
        metavar = fl.metavar or fl.flag.lstrip("-").replace("-", "_").upper()
        parser.add_argument(fl.flag, dest=dest, default=None, metavar=metavar, help=_help(fl, value))


def add_arguments(parser: argparse.ArgumentParser | Any, cls: type, exclude: Sequence[str] = ()) -> None:
    """Add one option per field of spec class ``cls`` (not those in ``exclude``) to ``parser`` (or a group)."""
    for name, fl in flags(cls).items():
        if name not in exclude:
            _add(parser, name, fl, default(cls, name))
    for name, source in _entry_fields(cls).items():
        if name not in exclude:
            for e in source():
                _add(parser, f"{name}.{e.name}", e.cli, e.default)


def parse_value(fl: Flag, text: str) -> Any:
    """``fl.parse(text)``, with a message naming the flag when the text is not a value of its kind."""
    try:
        return fl.parse(text)
    except (ValueError, TypeError):
        kind = {int: "a whole number", float: "a number"}.get(fl.parse, "another value")  # type: ignore[call-overload]
        raise SoftConError(f"{fl.flag} takes {kind}, not {text!r}.") from None


def from_args(cls: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """The spec of parsed arguments: each option given, the declared defaults for the rest, then ``fixed``.

    Raises:
        SoftConError: a value that does not parse or that the spec refuses (the message names the flag).
    """
    values = vars(args)
    kw: dict[str, Any] = {}
    for name, fl in flags(cls).items():
        if values.get(name) is not None:
            given = values[name]
            kw[name] = given if isinstance(given, bool) else parse_value(fl, given)
    for name, source in _entry_fields(cls).items():
        kw[name] = {e.name: parse_value(e.cli, values[f"{name}.{e.name}"]) for e in source()
                    if values.get(f"{name}.{e.name}") is not None}
    kw.update(fixed)
    return cls(**kw)


def _arg(flag: str, text: str) -> str:
    return f"{flag}={text}"  # one token: a value such as -1000 or -5,2,... is never read as an option


def to_argv(spec: Any) -> list[str]:
    """The options that give ``spec`` back through :func:`add_arguments` + :func:`from_args` (defaults left out)."""
    cls = type(spec)
    argv: list[str] = []
    for name, fl in flags(cls).items():
        value, base = getattr(spec, name), default(cls, name)
        if value == base:
            continue
        if isinstance(base, bool):
            argv.append(fl.flag)
        elif value is None:
            raise ValueError(f"{fl.flag} has no command-line form for None (its default is {base!r})")
        else:
            argv.append(_arg(fl.flag, fl.show(value)))
    for name, source in _entry_fields(cls).items():
        given = dict(getattr(spec, name))
        argv += [_arg(e.cli.flag, e.cli.show(given[e.name])) for e in source() if e.name in given]
    return argv
