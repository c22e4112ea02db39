"""User-facing errors.

Anything the user can get wrong (a config value, a path, a name) raises `FairbenchError`
at the boundary; the CLI prints it as one line, ``fairbench: error: ...``, and exits with
status 2. Programming errors are left to raise normally.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


class FairbenchError(Exception):
    """A problem with the user's input, reported as one line."""


class NumericalFault(FairbenchError):
    """A model produced NaN or inf during sampling."""


def suggest(name: str, valid: Iterable[str]) -> str:
    """Return ``" Did you mean: x?"`` for the closest valid name, else the list of valid names."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.6)
    if close:
        # prefer a transposition of the same letters ("ddmi" -> "ddim", not "ddpm")
        same_letters = [c for c in close if sorted(c) == sorted(str(name))]
        return f" Did you mean: {(same_letters or close)[0]}?"
    return f" Valid: {', '.join(valid)}."


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """Look `name` up in a registry dict, or raise one clear line naming it."""
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise FairbenchError(f"Unknown {kind} {name!r}.{suggest(name, registry)}") from None
