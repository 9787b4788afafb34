"""``fast_init``: the same records as the dataclass's own ``__init__`` builds, or a refusal."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import typing
from dataclasses import InitVar, dataclass, field
from typing import ClassVar

import pytest

from polyroute._frozen import TWIN_FROM, fast_init
from polyroute.answer import Answer
from polyroute.types import ChatRequest, Message, Usage


@dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str = "b"
    c: tuple[int, ...] = ()


@fast_init
@dataclass(frozen=True, slots=True)
class Fast:
    new: ClassVar[type[Fast]]
    a: int
    b: str = "b"
    c: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PlainWide:
    a: int
    b: str = "b"
    c: tuple[int, ...] = ()
    d: float = 0.5
    e: list[int] = field(default_factory=list)


@fast_init
@dataclass(frozen=True, slots=True)
class FastWide:  # enough fields for the open twin (TWIN_FROM)
    new: ClassVar[type[FastWide]]
    a: int
    b: str = "b"
    c: tuple[int, ...] = ()
    d: float = 0.5
    e: list[int] = field(default_factory=list)


@fast_init
@dataclass(frozen=True, slots=True)
class Base:
    new: ClassVar[type[Base]]
    a: int
    b: str = "b"


@fast_init
@dataclass(frozen=True, slots=True)
class Child(Base):
    c: float = 1.5
    d: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class Empty:
    pass


@pytest.mark.parametrize(("fast", "plain"), [(Fast, Plain), (FastWide, PlainWide)])
def test_it_builds_what_the_dataclass_builds(fast: type[Fast], plain: type[Plain]) -> None:
    for args, kwargs in [((1,), {}), ((1, "x"), {}), ((1,), {"c": (2,)}), ((), {"a": 3, "b": "y"})]:
        theirs = plain(*args, **kwargs)
        for ours in (fast(*args, **kwargs), fast.new(*args, **kwargs)):
            assert type(ours) is fast
            assert dataclasses.astuple(ours) == dataclasses.astuple(theirs)
            assert ours == fast(*args, **kwargs)
    assert fast(1).c is plain(1).c is fast.new(1).c  # a default is the same object
    assert str(inspect.signature(fast)) == str(inspect.signature(plain))
    assert typing.get_type_hints(fast.__init__) == typing.get_type_hints(plain.__init__)
    twin = "_twin" in fast.__init__.__code__.co_freevars
    assert twin == (len(dataclasses.fields(fast)) >= TWIN_FROM)


def test_equality_hash_replace_and_pickling_are_the_dataclass_own() -> None:
    one = Child(1, "x", 2.5)
    assert one == Child(1, "x", 2.5) and hash(one) == hash(Child(1, "x", 2.5))
    assert one != Child(1, "x")
    assert dataclasses.replace(one, b="y") == Child(1, "y", 2.5)
    assert pickle.loads(pickle.dumps(one)) == one
    assert repr(one) == "Child(a=1, b='x', c=2.5, d=False)"
    assert Empty() == Empty()


def test_it_stays_frozen() -> None:
    one = Base(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.a = 2  # type: ignore[misc]


def test_bad_arguments_are_refused_as_by_the_dataclass() -> None:
    with pytest.raises(
        TypeError, match=r"Base.__init__\(\) missing 1 required positional argument: 'a'"
    ):
        Base()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'd'"):
        Base(1, d=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes from 2 to 3 positional arguments but 4 were given"):
        Base(1, "b", 3)  # type: ignore[call-arg]


def test_the_request_path_records_use_it() -> None:
    for cls in (ChatRequest, Message, Usage, Answer):
        init = cls.__init__
        assert init.__module__ == cls.__module__
        assert init.__qualname__ == f"{cls.__qualname__}.__init__"
        assert "_twin" in init.__code__.co_freevars  # fields stored through the open twin
        assert typing.get_type_hints(init)["return"] is type(None)  # resolved in its module
    request = ChatRequest("m", (Message("user", "hi"),), max_tokens=5)
    assert request.max_tokens == 5 and request.stop == () and request.n == 1
    assert type(request) is ChatRequest and type(request.messages[0]) is Message


def test_new_builds_the_record_the_class_builds_without_the_type_call() -> None:
    request = ChatRequest.new(model="m", messages=(Message.new("user", "hi", name=None),))
    assert request == ChatRequest("m", (Message("user", "hi"),))
    assert type(request) is ChatRequest and type(request.messages[0]) is Message
    assert "new" in typing.get_type_hints(ChatRequest, include_extras=True)  # typed for mypy
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.model = "other"  # type: ignore[misc]
    wide = FastWide.new(1)
    assert wide.e == [] and wide.e is not FastWide.new(1).e  # a factory per record
    assert Child.new(1) == Child(1) and type(Base.new(1)) is Base
    # new always builds the class that declares it, never a subclass
    assert type(Loose.new(1)) is Child  # type: ignore[attr-defined]


def test_new_refuses_bad_arguments_and_a_failing_factory_leaves_nothing() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        FastWide.new(1, z=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes from 1 to 5 positional arguments but 6"):
        FastWide.new(1, "b", (), 0.5, [], 7)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'a'"):
        Fast.new()  # type: ignore[call-arg]

    def boom() -> list[int]:
        raise RuntimeError("boom")

    @fast_init
    @dataclass(frozen=True, slots=True)
    class Failing:
        new: ClassVar[type[Failing]]
        a: int
        b: list[int] = field(default_factory=boom)
        c: int = 0
        d: int = 0

    with pytest.raises(RuntimeError, match="boom"):
        Failing.new(1)
    assert Failing.new(1, [2]).b == [2]


def test_a_class_with_its_own_new_is_refused() -> None:
    @dataclass(frozen=True, slots=True)
    class Own:
        a: int

        @staticmethod
        def new() -> int:
            return 1

    with pytest.raises(TypeError, match="has an attribute 'new' of its own"):
        fast_init(Own)


class Loose(Child):
    """A plain subclass (with a ``__dict__``: another layout) that inherits the __init__."""

    def extra(self) -> str:
        return "x"


def test_a_subclass_that_inherits_it_is_built_through_the_slots() -> None:
    one = Loose(1, "y")
    assert type(one) is Loose and (one.a, one.b, one.c, one.extra()) == (1, "y", 1.5, "x")
    assert "_twin" in Child.__init__.__code__.co_freevars  # Child's own records use it
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.a = 2  # type: ignore[misc]


def test_a_failing_default_factory_leaves_no_record_behind() -> None:
    def boom() -> list[int]:
        raise RuntimeError("boom")

    @fast_init
    @dataclass(frozen=True, slots=True)
    class Failing:
        a: int
        b: list[int] = field(default_factory=boom)
        c: int = 0
        d: int = 0

    with pytest.raises(RuntimeError, match="boom"):
        Failing(1)
    built = Failing(1, [2])
    assert type(built) is Failing and built.b == [2]
    assert "_twin" in Failing.__init__.__code__.co_freevars
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.a = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "make",
    [
        lambda: dataclass(frozen=True)(type("NoSlots", (), {"__annotations__": {"a": "int"}})),
        lambda: dataclass(slots=True)(type("NotFrozen", (), {"__annotations__": {"a": "int"}})),
        lambda: type("NotADataclass", (), {}),
    ],
    ids=["no slots", "not frozen", "not a dataclass"],
)
def test_a_class_it_cannot_serve_is_refused(make: object) -> None:
    with pytest.raises(TypeError, match="is not a frozen, slotted dataclass"):
        fast_init(make())  # type: ignore[operator]


def test_a_default_factory_is_called_for_each_record_not_given_it() -> None:
    @dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = field(default_factory=list)

    before = str(inspect.signature(Factory))
    fast_init(Factory)
    assert str(inspect.signature(Factory)) == before  # "(a: 'list[int]' = <factory>) -> None"
    one, two = Factory(), Factory()
    assert one.a == [] and one.a is not two.a
    given = [1]
    assert Factory(given).a is given


def test_fields_it_cannot_build_are_refused() -> None:
    @dataclass(frozen=True, slots=True)
    class NotInit:
        a: int = field(default=0, init=False)

    @dataclass(frozen=True, slots=True)
    class KwOnly:
        a: int = field(default=0, kw_only=True)

    @dataclass(frozen=True, slots=True)
    class WithInitVar:
        a: int
        b: InitVar[int]

    @dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    for cls, why in [
        (NotInit, "takes other than its fields"),
        (KwOnly, "is keyword-only"),
        (WithInitVar, "takes other than its fields"),
        (PostInit, "has a __post_init__"),
    ]:
        with pytest.raises(TypeError, match=why):
            fast_init(cls)
