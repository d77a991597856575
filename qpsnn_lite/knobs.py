"""A configuration knob described once: its help, its choices or range, how the command line parses it.

``config.Config`` declares every field with :func:`knob`; ``Config.validate``, ``Config``'s docstring and the command
line's flags (``__main__``) are all generated from these descriptions, so adding a knob is one edit
(``docs/design.md``, "One source of truth per knob"). Error messages come from the same description: the Config says
``Config.bits must be None or a bit width in 1..16, got 0``, the command line ``expected a bit width in 1..16, got 0``.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ._checks import is_int, is_number

__all__ = ["Knob", "knob", "knob_of", "NONE_WORDS"]

NONE_WORDS = ("none", "None", "null")  # what the command line accepts for None
KINDS = ("int", "number", "bool", "choice", "custom")


@dataclass(frozen=True)
class Knob:
    """What one ``Config`` field accepts and how it is explained.

    ``kind`` is ``"int"`` / ``"number"`` (with ``low``, ``high``, ``strict`` for a lower bound excluded), ``"bool"``,
    ``"choice"`` (``choices``: a tuple, or a function returning one when the set can grow, like the registered
    criteria) or ``"custom"`` (``check(value) -> bool``, ``expected`` and ``parse(text)`` for the command line).
    ``optional`` admits None (``'none'`` on the command line). ``help`` is the line of ``--help``, ``doc`` the longer
    text of ``Config``'s docstring (``help`` when empty); ``show_default`` appends "(default: ...)" to ``help``.
    ``convert`` normalises a value before validation (e.g. a list of channels to a tuple).
    """

    group: str
    help: str
    kind: str
    doc: str = ""
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    low: float | None = None
    high: float | None = None
    strict: bool = False
    optional: bool = False
    what: str = ""
    expected: str = ""
    check: Callable[[Any], bool] | None = None
    parse: Callable[[str], Any] | None = None
    convert: Callable[[Any], Any] | None = None
    metavar: str | None = None
    show_default: bool = True

    def allowed(self) -> tuple:
        return tuple(self.choices() if callable(self.choices) else self.choices or ())

    def describe(self) -> str:
        """What a valid value is, in words (without "None or")."""
        if self.expected:
            return self.expected
        if self.kind == "choice":
            return "one of " + ", ".join(map(repr, self.allowed()))
        if self.kind == "bool":
            return "True or False"
        noun = self.what or ("an integer" if self.kind == "int" else "a number")
        if self.kind == "int":
            span = f"in {self.low:g}..{self.high:g}" if self.high is not None else f">= {self.low:g}"
            return f"{noun} {span}"
        span = f"> {self.low:g}" if self.strict else f">= {self.low:g}"
        return f"{noun} {span}" + (f" and <= {self.high:g}" if self.high is not None else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind == "int":
            return is_int(value) and value >= self.low and (self.high is None or value <= self.high)
        if self.kind == "number":
            return (is_number(value) and value >= self.low and not (self.strict and value == self.low)
                    and (self.high is None or value <= self.high))
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return isinstance(value, str) and value in self.allowed()
        return bool(self.check(value))

    def validate(self, name: str, value: Any) -> None:
        """Raise ``ValueError`` naming the field, the value and what is expected."""
        if not self.accepts(value):
            expected = ("None or " if self.optional else "") + self.describe()
            raise ValueError(f"Config.{name} must be {expected}, got {value!r}")

    # The command line -------------------------------------------------------------------------------------------
    def cli_parse(self, text: str) -> Any:
        """Text of a flag -> value; raises ``ArgumentTypeError`` (argparse then exits with status 2)."""
        if self.optional and text in NONE_WORDS:
            return None
        if self.kind == "custom":
            return self.parse(text) if self.parse else text
        if self.kind == "choice":
            if text not in self.allowed():
                raise argparse.ArgumentTypeError(
                    f"expected one of {', '.join(self.allowed())}{' or none' if self.optional else ''}, got {text!r}")
            return text
        number = int if self.kind == "int" else float
        try:
            value = number(text)
        except ValueError:
            noun = self.what or ("an integer" if self.kind == "int" else "a number")
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not self.accepts(value):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text}")
        return value

    def add_flag(self, group, name: str, default_value: Any) -> None:
        """Add this knob's flag to an argparse group; its default is SUPPRESS so that only the flags given
        override a preset."""
        help_text = self.help
        if self.show_default:
            help_text += f" (default: {'none' if default_value is None else default_value})"
        flag = "--" + name.replace("_", "-")
        options: dict[str, Any] = dict(default=argparse.SUPPRESS, help=help_text, dest=name)
        if self.kind == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
            return
        if self.kind == "choice" and not self.optional:
            group.add_argument(flag, choices=self.allowed(), **options)
            return
        if self.metavar:
            options["metavar"] = self.metavar
        if self.kind != "custom" or self.parse or self.optional:
            options["type"] = self.cli_parse
        group.add_argument(flag, **options)


def knob(default: Any, group: str, help: str, kind: str, **details: Any) -> Any:
    """A ``dataclasses.field`` with its :class:`Knob` in the metadata: ``x: int = knob(4, "model", "...", "int",
    low=1)``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return dataclasses.field(default=default, metadata={"knob": Knob(group, help, kind, **details)})


def knob_of(field: dataclasses.Field) -> Knob:
    return field.metadata["knob"]
