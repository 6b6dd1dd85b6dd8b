"""``dataclass(frozen=True, slots=True, ...)`` that costs a fraction of the import time.

Why this exists: ``dataclasses.dataclass`` writes each generated method (``__init__``,
``__repr__``, ``__eq__``, ``__hash__``, and for frozen classes ``__setattr__`` and
``__delattr__``) as source text and compiles it with ``exec`` while the module is being
imported — about six compilations per class. The core has ~40 frozen dataclasses (31 events
alone) and those compilations were most of what ``import millis_proto.wire`` cost beyond
``wsproto`` itself (measured with callgrind: ~3.4 M instructions per class).

:func:`frozen_dataclass` takes the same arguments and produces the same thing, but builds only
``__init__`` from source (its signature has to be the fields'), on the first call (see
:func:`_lazy_init`), reusing the compiled code across classes whose fields have the same names
and kinds. Everything else is a closure over the class's field names, made from code compiled
once, with this module. The class itself is still processed by ``dataclasses.dataclass`` (with
the generated methods switched off), so the ``Field`` objects, ``__dataclass_fields__``,
``__match_args__`` and ``__slots__`` are dataclasses' own and ``dataclasses.fields`` /
``asdict`` / ``replace`` / ``is_dataclass``, subclassing with ``@dataclass(frozen=True)``,
pickling and copying behave exactly as before. (One difference: setting an attribute that is
not a field raises ``FrozenInstanceError``, where the stdlib's slotted classes of 3.10 and
3.11 fail with a ``TypeError`` from ``super()``, their ``__setattr__`` holding the class
``slots=True`` replaced.)
``tests/core/test_frozen_dataclass.py`` checks every class against the stdlib's version.

Type checkers see plain ``dataclasses.dataclass`` (``TYPE_CHECKING`` below), so the classes
type-check as they always did. Each module using it also imports ``dataclasses.dataclass``
under this name in an ``if TYPE_CHECKING:`` block after the real import: griffe (the API
reference) takes that last import, and shows the fields as ``__init__`` parameters only for
``dataclasses.dataclass``.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from operator import attrgetter
from typing import Any

TYPE_CHECKING = False

__all__ = ["frozen_dataclass"]

if TYPE_CHECKING:
    from dataclasses import dataclass as frozen_dataclass
else:

    def frozen_dataclass(
        cls: type[Any] | None = None,
        /,
        *,
        frozen: bool = True,
        slots: bool = True,
        kw_only: bool = False,
        init: bool = True,
        repr: bool = True,
        eq: bool = True,
    ) -> Any:
        """``dataclasses.dataclass(frozen=True, slots=True, ...)`` without its ``exec`` calls.

        Takes dataclass()'s arguments; only frozen, slotted classes with ``__init__`` and
        ``__eq__`` are made (``kw_only`` and ``repr`` may be chosen).
        """
        if not (frozen and slots and init and eq):
            raise TypeError("frozen_dataclass makes frozen, slotted classes with __init__/__eq__")

        def wrap(cls: type[Any]) -> type[Any]:
            return _process(cls, kw_only=kw_only, repr=repr)

        return wrap if cls is None else wrap(cls)


_MISSING: Any = dataclasses.MISSING


class _HasDefaultFactory:
    # Marks a default_factory argument left unset, as dataclasses' own sentinel does (its
    # repr is what inspect.signature shows for such a parameter).
    def __repr__(self) -> str:
        return "<factory>"


_HAS_DEFAULT_FACTORY = _HasDefaultFactory()
#: Compiled ``__init__`` factories, by source: classes with the same field names and kinds
#: (several events have) share one compilation; default values are factory arguments.
_INIT_FACTORIES: dict[str, Callable[..., Callable[..., None]]] = {}


def _process(cls: type[Any], *, kw_only: bool, repr: bool) -> type[Any]:
    if any(dataclasses.is_dataclass(base) for base in cls.__mro__[1:]):
        # dataclass() below is told frozen=False, which it refuses under a frozen base.
        raise TypeError(f"{cls.__name__}: frozen_dataclass cannot extend a dataclass")
    has_doc = cls.__dict__.get("__doc__") is not None
    own = dict(cls.__dict__)
    # What dataclasses treats as a hash the class defined itself (then left alone).
    explicit_hash = not ("__hash__" not in own or (own["__hash__"] is None and "__eq__" in own))
    # Fields, slots and __match_args__ as dataclasses makes them; no method generated.
    cls = dataclasses.dataclass(
        cls, init=False, repr=False, eq=False, frozen=False, slots=True, kw_only=kw_only
    )
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    if {"self", "_object_setattr", "_HAS_DEFAULT_FACTORY"} & set(names):
        raise TypeError(f"{cls.__name__}: a field name frozen_dataclass's __init__ uses itself")
    methods: dict[str, Callable[..., Any]] = {"__init__": _lazy_init(cls, fields)}
    if repr:
        methods["__repr__"] = _repr(tuple(f.name for f in fields if f.repr))
    methods["__eq__"] = _eq(_values([f.name for f in fields if f.compare]))
    for name, fn in methods.items():
        if name not in own:  # the class's own method wins, as with dataclass()
            _install(cls, name, fn)
    if not explicit_hash:
        hashed = [f.name for f in fields if (f.compare if f.hash is None else f.hash)]
        _install(cls, "__hash__", _hash(_values(hashed)))
    for name, fn in (("__setattr__", _setattr(cls, names)), ("__delattr__", _delattr(cls, names))):
        if name in own:
            raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
        _install(cls, name, fn)
    # Pickling and copying a slotted frozen class: dataclasses adds the same pair.
    if "__getstate__" not in own:
        _install(cls, "__getstate__", _getstate(_values(list(names))))
    if "__setstate__" not in own:
        _install(cls, "__setstate__", _setstate(names))
    # Record the options a real frozen dataclass records: dataclass() and other tools read
    # them (a subclass made with @dataclass(frozen=True) checks that its base is frozen).
    params = cls.__dataclass_params__
    params.init, params.repr, params.eq, params.frozen = True, repr, True, True
    if not has_doc:
        import inspect

        cls.__doc__ = cls.__name__ + str(inspect.signature(cls)).replace(" -> None", "")
    return cls


def _install(cls: type[Any], name: str, fn: Callable[..., Any]) -> None:
    fn.__qualname__ = f"{cls.__qualname__}.{name}"
    fn.__module__ = cls.__module__
    setattr(cls, name, fn)


def _lazy_init(cls: type[Any], fields: tuple[dataclasses.Field[Any], ...]) -> Callable[..., None]:
    """An ``__init__`` that compiles the real one on its first call and puts it in its place.

    Why: compiling is what an ``__init__`` costs (~0.45 M instructions each, ~11 M for the
    events alone), and a program constructs only some of the classes it imports — a client
    never builds the server-side events, most never see a reconnect. Until the first call,
    ``inspect.signature`` reads ``__signature__``: the real signature, built without
    compiling. The first call then pays once for the class; races are harmless (two threads
    both install an equal function).
    """

    def __init__(self: Any, /, *args: Any, **kwargs: Any) -> None:
        init = _init(cls, fields)
        _install(cls, "__init__", init)
        init(self, *args, **kwargs)

    __init__.__signature__ = _signature(fields)  # type: ignore[attr-defined]
    __init__.__annotations__ = _annotations(fields)
    return __init__


def _annotations(fields: tuple[dataclasses.Field[Any], ...]) -> dict[str, Any]:
    return {**{f.name: f.type for f in fields if f.init}, "return": None}


def _signature(fields: tuple[dataclasses.Field[Any], ...]) -> Any:
    import inspect  # dataclasses has imported it already

    parameter = inspect.Parameter
    params = [parameter("self", parameter.POSITIONAL_OR_KEYWORD)]
    for kw_only in (False, True):
        kind = parameter.KEYWORD_ONLY if kw_only else parameter.POSITIONAL_OR_KEYWORD
        for f in fields:
            if f.init and bool(f.kw_only) is kw_only:
                if f.default is not _MISSING:
                    default = f.default
                elif f.default_factory is not _MISSING:
                    default = _HAS_DEFAULT_FACTORY
                else:
                    default = parameter.empty
                params.append(parameter(f.name, kind, default=default, annotation=f.type))
    return inspect.Signature(params, return_annotation=None)


def _init(cls: type[Any], fields: tuple[dataclasses.Field[Any], ...]) -> Callable[..., None]:
    # The code dataclasses generates for a frozen class: each field is stored with
    # object.__setattr__ (the class's own __setattr__ refuses), default factories run per call,
    # and __post_init__ is called last.
    args: list[str] = []
    kw_args: list[str] = []
    body: list[str] = []
    values: dict[str, Any] = {}
    for f in fields:
        if f.init:
            if f.default is not _MISSING:
                values[f"__dflt_{f.name}__"] = f.default
                arg = f"{f.name}=__dflt_{f.name}__"
            elif f.default_factory is not _MISSING:
                values[f"__factory_{f.name}__"] = f.default_factory
                arg = f"{f.name}=_HAS_DEFAULT_FACTORY"
                body.append(
                    f"  {f.name} = __factory_{f.name}__() "
                    f"if {f.name} is _HAS_DEFAULT_FACTORY else {f.name}"
                )
            else:
                arg = f.name
            (kw_args if f.kw_only else args).append(arg)
        elif f.default is not _MISSING:
            values[f"__dflt_{f.name}__"] = f.default
            body.append(f"  {f.name} = __dflt_{f.name}__")
        elif f.default_factory is not _MISSING:
            values[f"__factory_{f.name}__"] = f.default_factory
            body.append(f"  {f.name} = __factory_{f.name}__()")
        else:
            continue
        body.append(f"  _object_setattr(self, {f.name!r}, {f.name})")
    if hasattr(cls, "__post_init__"):
        body.append("  self.__post_init__()")
    params = ["self", *args, *(["*", *kw_args] if kw_args else [])]
    source = (
        f"def __create_fn__(_object_setattr, _HAS_DEFAULT_FACTORY, {', '.join(values)}):\n"
        f" def __init__({', '.join(params)}):\n" + "\n".join(body or ["  pass"]) + "\n"
        " return __init__\n"
    )
    factory = _INIT_FACTORIES.get(source)
    if factory is None:
        namespace: dict[str, Any] = {}
        exec(source, {"__builtins__": __builtins__}, namespace)
        factory = _INIT_FACTORIES[source] = namespace["__create_fn__"]
    fn = factory(object.__setattr__, _HAS_DEFAULT_FACTORY, **values)
    fn.__annotations__ = _annotations(fields)
    return fn


def _values(names: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """A function returning the tuple of ``names``' values (what dataclasses compares)."""
    if not names:
        return lambda obj: ()
    if len(names) == 1:
        get = attrgetter(names[0])
        return lambda obj: (get(obj),)
    return attrgetter(*names)


def _eq(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    return __eq__


def _hash(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(values(self))

    return __hash__


def _repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    @reprlib.recursive_repr()  # what dataclasses wraps its __repr__ in: "..." on recursion
    def __repr__(self: Any) -> str:
        fields = ", ".join([f"{name}={getattr(self, name)!r}" for name in names])
        return f"{self.__class__.__qualname__}({fields})"

    return __repr__


def _setattr(cls: type[Any], names: tuple[str, ...]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    return __setattr__


def _delattr(cls: type[Any], names: tuple[str, ...]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    return __delattr__


def _getstate(values: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], list[Any]]:
    def __getstate__(self: Any) -> list[Any]:
        return list(values(self))

    return __getstate__


def _setstate(names: tuple[str, ...]) -> Callable[[Any, list[Any]], None]:
    def __setstate__(self: Any, state: list[Any]) -> None:
        for name, value in zip(names, state, strict=False):
            object.__setattr__(self, name, value)

    return __setstate__
