"""A faster ``__init__`` for the frozen records a request builds.

A frozen dataclass's generated ``__init__`` sets each field with ``object.__setattr__``
(its own ``__setattr__`` refuses): about 90 ns a field on CPython 3.11, against 12 for a
plain one. A chat request builds some 25 such records with about 185 fields between them
(the request, its messages, the decision, the usage, the answer...): a tenth of what the
gateway's event loop spends on it (``bench/served_instructions.py``). :func:`fast_init`
gives a frozen, slotted dataclass an ``__init__`` that stores the fields as a plain class
does: the record is made an instance of an open twin for the while (a subclass that adds
no slot and keeps ``object``'s own ``__setattr__``, so the layout is the same and each
``self.field = value`` is the interpreter's fast slot store), then given its class back.
A record with fewer than :data:`TWIN_FROM` fields, or of a subclass that inherits this
``__init__``, is built through the slots' own descriptors instead. The signature, defaults
and result are the dataclass's; everything else (equality, hash, ``replace``, pickling,
the refusal to assign) is the dataclass's own.
Callgrind, a record of seven fields: 12.6k instructions with the dataclass's ``__init__``,
8.0k through the descriptors, 5.6k through the twin (each field 55 instead of 670; the
two class changes cost 1.9k).

Calling the class itself still costs CPython 3.11 its type call: the keyword arguments
are packed into a dict and unpacked again for ``__init__``, about 540 instructions a
keyword. So each record also gets ``new``, a plain function with ``__init__``'s
parameters that makes the instance of the twin directly and returns the record:
``ChatRequest.new(model=..., messages=...)`` is ``ChatRequest(model=..., messages=...)``
(the same record, the same defaults and refusals), 12.4k instructions against 5.4k with
thirteen keywords. The request path's hot records call it; a class that does declares
``new`` with its own name, ``new: ClassVar[type[ChatRequest]]``, so that mypy checks
each call against the class's own signature. It always builds the decorated class,
never a subclass.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


class _Factory:
    def __repr__(self) -> str:
        return "<factory>"  # as the dataclass's own signature shows it


_FACTORY = _Factory()
"""The default of a field with a ``default_factory``: the factory is called instead."""

TWIN_FROM = 4
"""The fewest fields worth the twin's two class changes (1.9k instructions, against 615
saved a field); fewer are stored through the slots' own descriptors."""


def fast_init(cls: type[T]) -> type[T]:
    """Replace the ``__init__`` of ``cls``, a ``@dataclass(frozen=True, slots=True)`` whose
    fields all go to ``__init__`` (no ``init=False``, ``kw_only`` or ``InitVar``) and that
    has no ``__post_init__``. Raises :class:`TypeError` for any other class, so a class that
    stops qualifying fails at import, not silently slower."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"fast_init: {cls.__qualname__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"fast_init: {cls.__qualname__} has a __post_init__")
    if "new" in cls.__dict__:
        raise TypeError(f"fast_init: {cls.__qualname__} has an attribute 'new' of its own")
    fields = dataclasses.fields(cls)
    expected = ["self", *(f.name for f in fields)]
    if list(inspect.signature(cls.__init__).parameters) != expected:  # an InitVar, init=False
        raise TypeError(f"fast_init: {cls.__qualname__}'s __init__ takes other than its fields")
    names: dict[str, Any] = {"_FACTORY": _FACTORY}
    params_src, stores, sets = [], [], []
    for f in fields:
        if f.kw_only:
            raise TypeError(f"fast_init: {cls.__qualname__}.{f.name} is keyword-only")
        slot = getattr(cls, f.name)
        if not isinstance(slot, types.MemberDescriptorType):
            raise TypeError(f"fast_init: {cls.__qualname__}.{f.name} has no slot")
        name = f.name
        names[f"_set_{name}"] = slot.__set__
        value = name
        if f.default_factory is not dataclasses.MISSING:  # called when not given, as there
            names[f"_factory_{name}"] = f.default_factory
            params_src.append(f"{name}=_FACTORY")
            value = f"_factory_{name}() if {name} is _FACTORY else {name}"
        elif f.default is not dataclasses.MISSING:
            names[f"_default_{name}"] = f.default
            params_src.append(f"{name}=_default_{name}")
        else:
            params_src.append(name)
        stores.append(f"self.{name} = {value}")
        sets.append(f"_set_{name}(self, {value})")
    body, made_new = _bodies(cls, names, stores, sets)
    # made by a function that closes over the setters and defaults, run in the class's
    # module, so that __init__'s globals are the module's and its annotations resolve
    # there (typing.get_type_hints), as the dataclass's own do
    source = (
        f"def __make({', '.join(names)}):\n"
        f"  def __init__(self, {', '.join(params_src)}):\n{body}"
        f"  def new({', '.join(params_src)}):\n{made_new}"
        "  return __init__, new\n"
    )
    module = sys.modules.get(cls.__module__)
    made: dict[str, Any] = {}
    exec(source, module.__dict__ if module is not None else {}, made)
    init, factory = made["__make"](**names)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = dict(cls.__init__.__annotations__)
    factory.__qualname__ = f"{cls.__qualname__}.new"
    factory.__annotations__ = {**init.__annotations__, "return": cls}
    cls.__init__ = init  # type: ignore[method-assign]
    cls.new = staticmethod(factory)  # type: ignore[attr-defined]
    return cls


def _bodies(
    cls: type, names: dict[str, Any], stores: list[str], sets: list[str]
) -> tuple[str, str]:
    """The source of the bodies of ``__init__`` and of ``new``; adds what they use to
    ``names``. Fewer than :data:`TWIN_FROM` fields go through the slots' setters."""
    names.update(_cls=cls, _object_new=object.__new__)
    through_slots = _block(sets or ["pass"], 4)
    if len(stores) < TWIN_FROM:
        return through_slots, f"    self = _object_new(_cls)\n{through_slots}    return self\n"
    names.update(_twin=_twin(cls), _reclass=object.__setattr__)
    init = (
        "    if type(self) is _cls:\n"
        "      _reclass(self, '__class__', _twin)\n"
        f"{_block(stores, 6)}"
        "      self.__class__ = _cls\n"
        "    else:  # a subclass's record: through the slots' own setters\n"
        f"{_block(sets, 6)}"
    )
    new = (
        "    self = _object_new(_twin)\n"
        f"{_block(stores, 4)}"
        "    self.__class__ = _cls\n"
        "    return self\n"
    )
    return init, new


def _twin(cls: type) -> type:
    """A subclass of ``cls`` adding no slot, so that a record's class may change to it and
    back (the same layout), with ``object``'s own ``__setattr__`` and ``__delattr__`` (one
    C slot serves both: with either of the dataclass's left, every store would go through
    a Python-level lookup): each field is then stored directly."""
    namespace = {
        "__module__": cls.__module__,
        "__qualname__": f"{cls.__qualname__}.<open>",
        "__slots__": (),
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
    }
    return types.new_class(cls.__name__, (cls,), exec_body=lambda ns: ns.update(namespace))


def _block(lines: list[str], indent: int) -> str:
    return "".join(f"{' ' * indent}{line}\n" for line in lines)
