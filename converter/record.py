# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""``@record``: plain data classes for the converter, without importing ``dataclasses``.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``): ~18 ms, and
decorating the converter's classes ~10 ms more (it compiles generated code), in every
``xen-vhd`` start. A conversion of a small image takes less than that. A record gets what the
converter uses of a dataclass: ``__init__`` from the annotated fields (defaults,
``factory(...)`` for mutable ones), ``__repr__``, ``__eq__``, and with ``frozen=True``
immutability and ``__hash__``.
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
    defaults, factories = {}, {}
    for name in names:
        default = getattr(cls, name, _MISSING)
        if isinstance(default, factory):
            factories[name] = default.make
            delattr(cls, name)              # no shared mutable default on the class
        elif default is not _MISSING:
            defaults[name] = default
        elif defaults or factories:
            raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one with a default")
    cls.__init__ = _init(cls.__name__, names, defaults, factories, "__post_init__" in cls.__dict__)
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


def _init(class_name, names, defaults, factories, post_init):
    """One ``__init__`` for any record, without generating code: ``compile`` costs ~1 ms the
    first time in a process. It writes ``__dict__`` directly, which frozen records allow."""
    count = len(names)

    def __init__(self, *args, **kwargs):
        if len(args) > count:
            raise TypeError(f"{class_name}() takes {count} arguments but {len(args)} were given")
        values = self.__dict__
        for name, value in zip(names, args):
            values[name] = value
        if len(args) < count or kwargs:
            for name in names[len(args):]:
                if name in kwargs:
                    values[name] = kwargs.pop(name)
                elif name in defaults:
                    values[name] = defaults[name]
                elif name in factories:
                    values[name] = factories[name]()
                else:
                    raise TypeError(f"{class_name}() missing argument {name!r}")
            if kwargs:
                raise TypeError(f"{class_name}() got an unexpected or repeated argument {next(iter(kwargs))!r}")
        if post_init:
            self.__post_init__()

    __init__.__qualname__ = f"{class_name}.__init__"
    return __init__


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
