"""Record: frozen-dataclass behaviour without the generated methods."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from x402console.records import Record, record


@record
class Point(Record):
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)
    note: str = dataclasses.field(default="", compare=False)


@record
class Checked(Record):
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low above high")


def test_construction_like_a_dataclass() -> None:
    p = Point(1, 2)
    assert (p.x, p.y, p.tags, p.note) == (1, 2, [], "")
    assert Point(x=3).y == 0
    assert Point(1).tags is not Point(1).tags  # a factory per instance, not a shared default
    assert [f.name for f in dataclasses.fields(Point)] == ["x", "y", "tags", "note"]
    assert dataclasses.is_dataclass(p)
    assert dataclasses.asdict(p) == {"x": 1, "y": 2, "tags": [], "note": ""}
    assert dataclasses.replace(p, y=5) == Point(1, 5)


@pytest.mark.parametrize("call, message", [
    (lambda: Point(), "missing 1 required argument: 'x'"),
    (lambda: Point(1, 2, [], "n", 5), "takes 4 positional arguments but 5 were given"),
    (lambda: Point(1, x=2), "multiple values for argument 'x'"),
    (lambda: Point(1, z=2), "unexpected keyword argument 'z'"),
])
def test_bad_arguments_are_type_errors(call, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call()


def test_frozen() -> None:
    p = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.y
    assert p.x == 1


def test_equality_hash_and_repr_follow_compared_fields() -> None:
    a, b = Point(1, 2, note="first"), Point(1, 2, note="second")
    assert a == b and hash(Point(1, 2, ("t",))) == hash(Point(1, 2, ("t",)))  # type: ignore[arg-type]
    assert a != Point(1, 3) and a != (1, 2)
    assert repr(a) == "Point(x=1, y=2, tags=[], note='first')"
    with pytest.raises(TypeError):
        hash(a)  # a list field is unhashable, as with a frozen dataclass


def test_post_init_runs_and_copies_work() -> None:
    with pytest.raises(ValueError, match="low above high"):
        Checked(3, 1)
    c = Checked(1, 3)
    assert copy.deepcopy(c) == c and pickle.loads(pickle.dumps(c)) == c


def test_record_requires_the_base_class() -> None:
    with pytest.raises(TypeError, match="Record subclass"):
        record(type("Plain", (), {"__annotations__": {"x": "int"}}))
