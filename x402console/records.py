"""Immutable record classes that cost no exec() at import.

`@dataclass(frozen=True)` compiles __init__, __setattr__, __delattr__, __eq__, __hash__ and
__repr__ with exec() for every class it decorates: about 0.3 ms each on Python 3.11, 30-40 ms
over the settings and source models the console imports before its first frame. `@record`
is a dataclass for which dataclasses generates no method at all; the methods come from
`Record`, generic, driven by the class's `fields()` and built on first use. Behaviour is
that of a frozen dataclass with eq: `fields`, `replace` and `asdict` work, assignment and
deletion raise FrozenInstanceError, equality and hash follow the fields with compare=True.
Creating an instance costs a few microseconds more, so hot per-line types keep `@dataclass`.
"""

from __future__ import annotations

from dataclasses import MISSING, FrozenInstanceError, dataclass, fields
from typing import Any, TypeVar

C = TypeVar("C", bound=type)


class _Plan:
    """What the generic methods need of a class, read from fields() once."""

    __slots__ = ("positional", "known", "every", "compared", "shown")

    def __init__(self, cls: type) -> None:
        every = fields(cls)
        self.positional = tuple(f.name for f in every if f.init)
        self.known = frozenset(self.positional)
        self.every = tuple((f.name, f.init, f.default, f.default_factory) for f in every)
        self.compared = tuple(f.name for f in every if f.compare)
        self.shown = tuple(f.name for f in every if f.repr)


_PLANS: dict[type, _Plan] = {}


def record(cls: C) -> C:
    """Make `cls` (a subclass of Record) a dataclass whose methods are Record's."""
    if not issubclass(cls, Record):
        raise TypeError(f"@record needs a Record subclass, not {cls.__name__}")
    return dataclass(init=False, repr=False, eq=False, frozen=False)(cls)


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _Plan(cls)
    return plan


class Record:
    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        plan = _plan(type(self))
        name_of = type(self).__name__
        if len(args) > len(plan.positional):
            raise TypeError(f"{name_of}() takes {len(plan.positional)} positional arguments but {len(args)} were given")
        given = dict(zip(plan.positional, args))
        for key, value in kwargs.items():
            if key in given:
                raise TypeError(f"{name_of}() got multiple values for argument {key!r}")
            if key not in plan.known:
                raise TypeError(f"{name_of}() got an unexpected keyword argument {key!r}")
            given[key] = value
        put = object.__setattr__
        for name, init, default, factory in plan.every:
            if init and name in given:
                put(self, name, given[name])
            elif factory is not MISSING:
                put(self, name, factory())
            elif default is not MISSING:
                put(self, name, default)
            elif init:
                raise TypeError(f"{name_of}() missing 1 required argument: {name!r}")
        post = getattr(self, "__post_init__", None)
        if post is not None:
            post()

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _compared(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _plan(type(self)).compared)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared() == other._compared()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _plan(type(self)).shown)
        return f"{self.__class__.__qualname__}({shown})"
