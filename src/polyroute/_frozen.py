"""A faster ``__init__`` for the frozen records a request builds.

A frozen dataclass's generated ``__init__`` sets each field with ``object.__setattr__``
(its own ``__setattr__`` refuses): about 90 ns a field on CPython 3.11, against 12 for a
plain one. A chat request builds some 25 such records with about 185 fields between them
(the request, its messages, the decision, the usage, the answer...): a tenth of what the
gateway's event loop spends on it (``bench/served_instructions.py``). :func:`fast_init`
gives a frozen, slotted dataclass an ``__init__`` that stores each field through its slot's
own descriptor instead, which the instance's ``__setattr__`` never sees: the same
signature, defaults and result, at about half the cost. Everything else (equality, hash,
``replace``, pickling, the refusal to assign) is the dataclass's own.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from types import MemberDescriptorType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


class _Factory:
    def __repr__(self) -> str:
        return "<factory>"  # as the dataclass's own signature shows it


_FACTORY = _Factory()
"""The default of a field with a ``default_factory``: the factory is called instead."""


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
    fields = dataclasses.fields(cls)
    expected = ["self", *(f.name for f in fields)]
    if list(inspect.signature(cls.__init__).parameters) != expected:  # an InitVar, init=False
        raise TypeError(f"fast_init: {cls.__qualname__}'s __init__ takes other than its fields")
    names: dict[str, Any] = {"_FACTORY": _FACTORY}
    params_src, body = [], []
    for f in fields:
        if f.kw_only:
            raise TypeError(f"fast_init: {cls.__qualname__}.{f.name} is keyword-only")
        slot = getattr(cls, f.name)
        if not isinstance(slot, MemberDescriptorType):
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
        body.append(f"    _set_{name}(self, {value})\n")
    # made by a function that closes over the setters and defaults, run in the class's
    # module, so that __init__'s globals are the module's and its annotations resolve
    # there (typing.get_type_hints), as the dataclass's own do
    inner = "".join(f"  {line}" for line in body) or "    pass\n"
    source = (
        f"def __make({', '.join(names)}):\n"
        f"  def __init__(self, {', '.join(params_src)}):\n{inner}"
        "  return __init__\n"
    )
    module = sys.modules.get(cls.__module__)
    made: dict[str, Any] = {}
    exec(source, module.__dict__ if module is not None else {}, made)
    init = made["__make"](**names)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__annotations__ = dict(cls.__init__.__annotations__)
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
