"""``@record``: plain data classes for the converter, without importing ``dataclasses``.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``): ~18 ms, and
decorating the converter's classes ~10 ms more, in every ``xen-vhd`` start. A conversion of a
small image takes less than that. A record gets what the converter uses of a dataclass:
``__init__`` from the annotated fields (defaults, ``factory(...)`` for mutable ones),
``__repr__``, ``__eq__``, and with ``frozen=True`` immutability and ``__hash__``.
"""

_MISSING = object()


class factory:
    """A field default built anew for each instance (``dataclasses.field(default_factory=...)``)."""

    def __init__(self, make):
        self.make = make


class FrozenRecordError(AttributeError):
    pass


def record(cls=None, *, frozen=False):
    if cls is None:
        return lambda c: _make(c, frozen)
    return _make(cls, frozen)


def _fields(cls):
    names = []
    for klass in reversed(cls.__mro__):
        for name in klass.__dict__.get("__annotations__", {}):
            if name not in names:
                names.append(name)
    return tuple(names)


def _make(cls, frozen):
    names = _fields(cls)
    env = {"_MISSING": _MISSING, "_set": object.__setattr__}
    params, body = [], []
    seen_default = False
    for name in names:
        default = getattr(cls, name, _MISSING)
        if isinstance(default, factory):
            env[f"_make_{name}"] = default.make
            params.append(f"{name}=_MISSING")
            value = f"_make_{name}() if {name} is _MISSING else {name}"
            delattr(cls, name)              # no shared mutable default on the class
        elif default is not _MISSING:
            env[f"_default_{name}"] = default
            params.append(f"{name}=_default_{name}")
            value = name
        else:
            if seen_default:
                raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one with a default")
            params.append(name)
            value = name
        seen_default = seen_default or default is not _MISSING
        body.append(f"    _set(self, {name!r}, {value})" if frozen else f"    self.{name} = {value}")
    if "__post_init__" in cls.__dict__:
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass") + "\n"
    exec(compile(source, f"<record {cls.__name__}>", "exec"), env)
    cls.__init__ = env["__init__"]
    cls.__init__.__qualname__ = f"{cls.__name__}.__init__"
    cls._record_fields = names
    if "__repr__" not in cls.__dict__:
        cls.__repr__ = _repr
    if "__eq__" not in cls.__dict__:
        cls.__eq__ = _eq
        cls.__hash__ = _hash if frozen else None     # mutable records are unhashable, as dataclasses
    if frozen:
        cls.__setattr__ = _frozen_setattr
        cls.__delattr__ = _frozen_delattr
    return cls


def _values(obj):
    return tuple(getattr(obj, name) for name in obj._record_fields)


def _repr(self):
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._record_fields)
    return f"{type(self).__qualname__}({inner})"


def _eq(self, other):
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self):
    return hash(_values(self))


def _frozen_setattr(self, name, value):
    raise FrozenRecordError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")


def _frozen_delattr(self, name):
    raise FrozenRecordError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")


def as_dict(obj):
    """The fields of a record, by name (shallow)."""
    return {name: getattr(obj, name) for name in obj._record_fields}
