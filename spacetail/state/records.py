"""Typed, immutable records that turn into JSON and back: the status and its parts.

Why not dataclasses: importing them (and `inspect` with them) costs every `spacetail status`
about 10 ms, a third of its run, and hooks call it several times a phase. A record here is
declared as a dataclass is (annotated fields, defaults), checked by mypy as one (PEP 681's
`dataclass_transform`: keyword-only, frozen), and carries what the status needs and no more:
construction by keyword, equality, `replace`, and JSON both ways. `from_json` checks every
field's type, so a reply of another version or a planted file is refused as a whole
(ValueError) instead of surprising a reader later.

Field types are spelled from a small vocabulary: str, int, float, bool, `X | None`,
`tuple[X, ...]`, an enum, another record, or a class with `from_json`/`to_json`.
"""

from __future__ import annotations

import enum
import sys

TYPE_CHECKING = False  # typing costs `spacetail status` milliseconds; mypy still sees this block
if TYPE_CHECKING:
    from typing import Any, ClassVar, Self, dataclass_transform
else:

    def dataclass_transform(**_options: object) -> object:
        return lambda cls: cls


_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Record:
    """Subclasses declare fields as class annotations, with or without defaults."""

    _fields: ClassVar[dict[str, str]] = {}  # name -> its type, as written
    _defaults: ClassVar[dict[str, Any]] = {}
    # Fields whose record is written into the parent's JSON object rather than under its name:
    # the status keeps the flat keys scripts already read.
    _inline: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls) -> None:
        own = {
            name: str(kind)
            # (inspect.get_annotations would import inspect, the cost this module avoids)
            for name, kind in cls.__dict__.get("__annotations__", {}).items()  # noqa: RUF063
            if not str(kind).startswith("ClassVar")
        }
        cls._fields = {**cls._fields, **own}
        cls._defaults = {**cls._defaults}
        for name in own:
            if name in cls.__dict__:
                cls._defaults[name] = cls.__dict__[name]

    def __init__(self, **values: object) -> None:
        cls = type(self)
        unknown = values.keys() - cls._fields.keys()
        if unknown:
            raise TypeError(f"{cls.__name__} has no field {sorted(unknown)[0]!r}")
        for name in cls._fields:
            if name in values:
                value = values[name]
            elif name in cls._defaults:
                value = cls._defaults[name]
            else:
                raise TypeError(f"{cls.__name__} needs {name!r}")
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use replace()")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Record)
            and type(other) is type(self)
            and (self._values() == other._values())
        )

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"

    def replace(self, **changes: object) -> Self:
        return type(self)(**{**{n: getattr(self, n) for n in self._fields}, **changes})

    # --- JSON -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._fields:
            value = getattr(self, name)
            if name in self._inline:
                out.update(value.to_json())
            else:
                out[name] = _dump(value)
        return out

    @classmethod
    def from_json(cls, data: object) -> Self:
        """The record DATA describes; ValueError naming the first field that does not fit.
        A missing field takes its default (a reply of an older version); extra keys are
        ignored (a newer one)."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected a JSON object")
        values: dict[str, object] = {}
        for name, kind in cls._fields.items():
            if name in cls._inline:
                values[name] = _load(kind, data, cls, name)
            elif name in data:
                values[name] = _load(kind, data[name], cls, name)
            elif name not in cls._defaults:
                raise ValueError(f"{cls.__name__}: {name} is missing")
        return cls(**values)


def _dump(value: object) -> object:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    to_json = getattr(value, "to_json", None)
    return to_json() if callable(to_json) else value


def _load(kind: str, value: object, owner: type, name: str) -> object:
    """VALUE as the type KIND (spelled as in the annotation); ValueError when it is not one."""
    kind = kind.strip()
    if kind.endswith("| None"):
        return None if value is None else _load(kind[: -len("| None")], value, owner, name)
    if kind.startswith("tuple[") and kind.endswith(", ...]"):
        if not isinstance(value, list):
            raise ValueError(f"{owner.__name__}.{name}: expected a list")
        return tuple(_load(kind[len("tuple[") : -len(", ...]")], v, owner, name) for v in value)
    if kind in _SCALARS:
        # bool is an int to Python, never to JSON's readers: true is not a port.
        if (kind == "bool") != isinstance(value, bool) or not isinstance(value, _SCALARS[kind]):
            raise ValueError(f"{owner.__name__}.{name}: expected {kind}, got {value!r:.40}")
        return float(value) if kind == "float" else value  # type: ignore[arg-type]
    target = vars(sys.modules[owner.__module__]).get(kind)
    if isinstance(target, type) and issubclass(target, enum.Enum):
        try:
            return target(value)
        except ValueError:
            raise ValueError(f"{owner.__name__}.{name}: {value!r:.40} is not a {kind}") from None
    from_json = getattr(target, "from_json", None)
    if from_json is None:
        raise TypeError(f"{owner.__name__}.{name}: cannot read the type {kind!r}")
    loaded = from_json(value)
    if loaded is None:  # from_json of a class that answers None for what it cannot read
        raise ValueError(f"{owner.__name__}.{name}: not a {kind}")
    return loaded
