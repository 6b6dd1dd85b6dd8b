"""``frozen_dataclass`` makes what ``dataclasses.dataclass(frozen=True, slots=True)`` makes.

The core's frozen dataclasses are built by ``millis_proto._frozen`` (for import time; see
its docstring). Each check here compares with the stdlib's own class made from the same
fields, for small classes covering every option used and for every class of the core.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from millis_proto._frozen import frozen_dataclass

_USERS = (
    *(
        f"millis_proto.{m}"
        for m in ("events", "config", "endpoint", "envelope", "machine", "playback")
    ),
    "transports._client",
    "transports._native",
    "transports._queue",
)


def _made_by_frozen_dataclass(cls: type) -> bool:
    setattr_ = cls.__dict__.get("__setattr__")
    return getattr(setattr_, "__code__", None) is not None and (
        setattr_.__code__.co_filename.endswith("_frozen.py")
    )


def _core_classes() -> list[type]:
    found = []
    for name in _USERS:
        module = importlib.import_module(name)
        found += [
            v
            for v in vars(module).values()
            if isinstance(v, type)
            and v.__module__ == module.__name__
            and dataclasses.is_dataclass(v)
        ]
    return found


def _reference(cls: type) -> type:
    """The stdlib's frozen slotted dataclass with ``cls``'s fields, name and own methods."""
    specs = []
    for f in dataclasses.fields(cls):
        kwargs: dict[str, Any] = {
            "init": f.init,
            "repr": f.repr,
            "hash": f.hash,
            "compare": f.compare,
            "kw_only": f.kw_only,
        }
        if f.default is not dataclasses.MISSING:
            kwargs["default"] = f.default
        if f.default_factory is not dataclasses.MISSING:
            kwargs["default_factory"] = f.default_factory
        specs.append((f.name, f.type, field(**kwargs)))
    generated = {
        "__init__", "__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__",
        "__getstate__", "__setstate__", "__match_args__", "__slots__", "__dict__",
        "__weakref__", "__dataclass_fields__", "__dataclass_params__", "__doc__",
    }  # fmt: skip
    names = {f.name for f in dataclasses.fields(cls)}
    namespace = {
        k: v for k, v in vars(cls).items() if k not in generated and k not in names
    }  # the class's own methods and class variables
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if params.repr is False:
        namespace["__repr__"] = vars(cls)["__repr__"]
    ref = dataclasses.make_dataclass(
        cls.__name__,
        specs,
        bases=cls.__bases__,
        namespace=namespace,
        frozen=True,
        slots=True,
        repr=params.repr,
    )
    ref.__qualname__ = cls.__qualname__
    return ref


@frozen_dataclass(frozen=True, slots=True, kw_only=True)
class _KwOnly:
    """Doc."""

    a: int
    b: str = "x"
    c: list[int] = field(default_factory=list, compare=False)
    secret: str = field(default="s", repr=False)
    f: float = 0.5


@frozen_dataclass(frozen=True, slots=True)
class _Positional:
    x: int
    y: Any = None


@frozen_dataclass(frozen=True, slots=True)
class _Empty:
    """Nothing."""


@frozen_dataclass(frozen=True, slots=True, kw_only=True)
class _PostInit:
    """Checked."""

    n: int
    seen: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("negative")
        self.seen.append(self.n)


@frozen_dataclass(frozen=True, slots=True, repr=False)
class _OwnRepr:
    """Own repr."""

    data: bytes

    def __repr__(self) -> str:
        return f"_OwnRepr(<{len(self.data)}>)"


_SAMPLES: list[tuple[type, dict[str, Any]]] = [
    (_KwOnly, {"a": 1}),
    (_KwOnly, {"a": 2, "b": "y", "c": [1], "secret": "t"}),
    (_Positional, {"x": 1}),
    (_Positional, {"x": 1, "y": [1, 2]}),
    (_Empty, {}),
    (_PostInit, {"n": 3}),
    (_OwnRepr, {"data": b"abc"}),
]


@pytest.mark.parametrize(("cls", "kwargs"), _SAMPLES)
def test_behaves_as_the_stdlib_dataclass(cls: type, kwargs: dict[str, Any]) -> None:
    ref = _reference(cls)
    assert str(inspect.signature(cls)) == str(inspect.signature(ref))
    assert cls.__init__.__annotations__ == ref.__init__.__annotations__  # type: ignore[misc]
    assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"  # type: ignore[misc]
    assert cls.__match_args__ == ref.__match_args__  # type: ignore[attr-defined]
    assert cls.__slots__ == ref.__slots__  # type: ignore[attr-defined]
    for attr in ("init", "repr", "eq", "order", "unsafe_hash", "frozen"):
        assert getattr(cls.__dataclass_params__, attr) == getattr(  # type: ignore[attr-defined]
            ref.__dataclass_params__,  # type: ignore[attr-defined]
            attr,
        )
    ours, theirs = cls(**copy.deepcopy(kwargs)), ref(**copy.deepcopy(kwargs))
    assert repr(ours) == repr(theirs)
    try:
        expected: object = hash(theirs)
    except TypeError:
        expected = TypeError
    if expected is TypeError:
        with pytest.raises(TypeError):
            hash(ours)
    else:
        assert hash(ours) == expected
    assert dataclasses.asdict(ours) == dataclasses.asdict(theirs)  # type: ignore[arg-type]
    assert dataclasses.astuple(ours) == dataclasses.astuple(theirs)  # type: ignore[arg-type]
    assert [f.name for f in dataclasses.fields(ours)] == [
        f.name for f in dataclasses.fields(theirs)
    ]
    assert ours == cls(**copy.deepcopy(kwargs))
    assert ours != theirs  # another class, as between two dataclasses
    assert (ours == object()) is False
    for other in (copy.copy(ours), copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert other == ours
        assert type(other) is cls
    # Another attribute: the stdlib's slotted class (3.10, 3.11) fails with a TypeError from
    # ``super()``, as its __setattr__ holds the class it replaced; ours refuses it as frozen.
    with pytest.raises(AttributeError):
        ours.other = 1  # type: ignore[attr-defined]
    for name in [f.name for f in dataclasses.fields(ours)]:
        with pytest.raises(dataclasses.FrozenInstanceError) as exc:
            setattr(ours, name, 1)
        with pytest.raises(dataclasses.FrozenInstanceError) as ref_exc:
            setattr(theirs, name, 1)
        assert str(exc.value) == str(ref_exc.value)
        with pytest.raises(dataclasses.FrozenInstanceError) as exc:
            delattr(ours, name)
        with pytest.raises(dataclasses.FrozenInstanceError) as ref_exc:
            delattr(theirs, name)
        assert str(exc.value) == str(ref_exc.value)
    if kwargs:
        name, value = next(iter(kwargs.items()))
        changed = dataclasses.replace(ours, **{name: value})  # type: ignore[type-var]
        assert changed == ours
        assert changed is not ours


def test_comparison_and_missing_arguments() -> None:
    a, b = _KwOnly(a=1, c=[1]), _KwOnly(a=1, c=[2])
    assert a == b  # c has compare=False
    assert hash(a) == hash(b)
    nan = float("nan")
    assert _KwOnly(a=1, f=nan) == _KwOnly(a=1, f=nan)  # tuples compare identity first
    assert _KwOnly(a=1, f=nan) != _KwOnly(a=1, f=float("nan"))
    assert _KwOnly(a=1).c is not _KwOnly(a=1).c  # a fresh default per instance
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'a'"):
        _KwOnly()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        _KwOnly(1)  # type: ignore[misc]
    with pytest.raises(ValueError, match="negative"):
        _PostInit(n=-1)
    assert _PostInit(n=2).seen == [2]
    assert _Positional(1, 2) == _Positional(x=1, y=2)
    match _Positional(1, 2):
        case _Positional(x, y):
            assert (x, y) == (1, 2)
    assert _KwOnly.__doc__ == "Doc."
    assert _Positional.__doc__ == "_Positional(x: 'int', y: 'Any' = None)"


def test_subclassing_with_dataclass_and_recursion() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Sub(_KwOnly):
        d: int = 0

    s = Sub(a=1, d=2)
    assert dataclasses.asdict(s)["d"] == 2
    assert repr(s).startswith("test_subclassing_with_dataclass_and_recursion.<locals>.Sub(a=1,")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.d = 3  # type: ignore[misc]
    with pytest.raises(TypeError, match="non-frozen"):

        @dataclass
        class Thawed(_KwOnly):
            pass

    loop: list[Any] = []
    p = _Positional(1, loop)
    loop.append(p)
    assert repr(p) == "_Positional(x=1, y=[...])"


def test_refuses_what_it_does_not_make() -> None:
    with pytest.raises(TypeError):
        frozen_dataclass(frozen=False)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="__setattr__"):

        @frozen_dataclass(frozen=True, slots=True)
        class Own:
            x: int

            def __setattr__(self, name: str, value: Any) -> None:
                pass


def test_every_class_made_by_it_matches_the_stdlib() -> None:
    classes = _core_classes()
    made = [c for c in classes if _made_by_frozen_dataclass(c)]
    assert len(made) == len(classes) >= 41  # 31 events, config, endpoint, ..., transports' 3
    for cls in made:
        ref = _reference(cls)
        assert str(inspect.signature(cls)) == str(inspect.signature(ref)), cls
        assert cls.__match_args__ == ref.__match_args__, cls  # type: ignore[attr-defined]
        assert cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        assert cls.__doc__ == ref.__doc__ or cls.__doc__, cls


def test_events_compare_hash_and_repr_as_the_stdlib_ones() -> None:
    from millis_proto import events

    for cls in _core_classes():
        if cls.__module__ != events.__name__:
            continue
        kwargs = {f.name: f"v_{f.name}" for f in dataclasses.fields(cls) if f.init}
        if cls is events.AgentAudio or cls is events.ClientAudio:
            kwargs = {"data": b"abc"}
        if cls is events.InitiateReceived:
            kwargs["data"] = {"public_key": "k"}  # type: ignore[assignment]
        ours, theirs = cls(**kwargs), _reference(cls)(**kwargs)
        assert repr(ours) == repr(theirs), cls
        if cls is not events.InitiateReceived:  # a dict field: neither can be hashed
            assert hash(ours) == hash(theirs), cls
        assert ours == cls(**kwargs), cls
        assert events.event_to_dict(ours) == events.event_to_dict(cls(**kwargs)), cls


def test_init_is_compiled_on_first_use_with_the_same_signature() -> None:
    @frozen_dataclass(frozen=True, slots=True, kw_only=True)
    class Lazy:
        """Doc."""

        a: int
        b: list[int] = field(default_factory=list)

    ref = _reference(Lazy)
    stub = Lazy.__init__
    assert str(inspect.signature(Lazy)) == str(inspect.signature(ref))
    assert str(inspect.signature(stub)) == str(inspect.signature(ref.__init__))
    assert stub.__code__.co_filename.endswith("_frozen.py")

    class Plain(Lazy):  # no __init__ of its own: the first call installs Lazy's
        __slots__ = ()

    assert Plain(a=1).a == 1
    compiled = Lazy.__init__
    assert compiled is not stub
    assert compiled.__qualname__ == f"{Lazy.__qualname__}.__init__"
    assert str(inspect.signature(compiled)) == str(inspect.signature(ref.__init__))
    assert Lazy(a=2) == Lazy(a=2, b=[])
    held = Lazy.__new__(Lazy)
    stub(held, a=3)  # an __init__ taken before the first call still works
    assert held.a == 3
    assert Lazy.__init__ is not stub
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'a'"):
        Lazy()  # type: ignore[call-arg]
