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

"""converter.record: the dataclass subset the converter uses."""

import pytest

from converter.record import FrozenRecordError, factory, record


@record
class Point:
    x: int
    y: int = 0
    tags: list = factory(list)


@record(frozen=True)
class Key:
    a: int
    b: str = "b"


def test_init_defaults_and_factories():
    p, q = Point(1), Point(2, 3, ["t"])
    assert (p.x, p.y, p.tags) == (1, 0, [])
    p.tags.append("mine")
    assert Point(5).tags == [] and "tags" not in Point.__dict__     # not shared
    assert (q.x, q.y, q.tags) == (2, 3, ["t"])
    assert Point(x=1, y=2) == Point(1, 2) != Point(1, 3)
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=[])"
    with pytest.raises(TypeError):
        Point()
    with pytest.raises(TypeError):
        hash(Point(1))


def test_frozen():
    k = Key(1)
    with pytest.raises(FrozenRecordError):
        k.a = 2
    with pytest.raises(AttributeError):
        del k.b
    assert {Key(1), Key(1, "b"), Key(2)} == {Key(1), Key(2)}
    assert Key(1) != Point(1)


def test_field_order_checked():
    with pytest.raises(TypeError, match="without a default"):
        @record
        class Bad:
            a: int = 1
            b: int


def test_post_init_runs():
    @record
    class Sized:
        n: int

        def __post_init__(self):
            self.double = 2 * self.n

    assert Sized(4).double == 8


def test_argument_errors():
    with pytest.raises(TypeError, match="takes 3 arguments"):
        Point(1, 2, [], 4)
    with pytest.raises(TypeError, match="unexpected or repeated argument 'z'"):
        Point(1, z=2)
    with pytest.raises(TypeError, match="repeated argument 'x'"):
        Point(1, x=2)
