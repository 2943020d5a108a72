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

"""Property-based: for random chains, the streaming conversion, the conversion of the extracted
files (which reads only the sectors the rule still wants), the random-access reader and the
coalesced VHD (which must also pass vhd-util check's rules) agree byte for byte with the
builder's independently computed disk."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converter.builder import ImageBuilder
from converter.chain import ChainReader
from converter.check import check_image
from converter.convert import convert_image

SECTOR = 512
KIB = 1024

write_op = st.tuples(
    st.floats(0, 1),                                     # where, as a fraction of the disk
    st.sampled_from([1, 7, 511, 512, 513, 4096, 65536, 300 * KIB, 1100 * KIB]),
    st.sampled_from(["random", "zeros", "text"]),
)
layer = st.tuples(
    st.sampled_from([0, 0, SECTOR, 3 * SECTOR, 700 * KIB]),          # growth of this layer
    st.lists(write_op, max_size=5),
)
chain = st.tuples(
    st.integers(1, 2500),                                # base size in sectors (unaligned sizes too)
    st.lists(layer, max_size=5),                         # depth 1..6
    st.sampled_from([512 * KIB, 1024 * KIB, 2048 * KIB]),  # block size: chunk splits and merges
    st.booleans(),                                       # garbage in bitmap-clear sectors
    st.booleans(),                                       # batmap
    st.integers(0, 2 ** 32),                             # seed for content and member order
)


def realise(spec):
    base_sectors, layers, block_size, garbage, batmap, seed = spec
    rnd = random.Random(seed)
    b = ImageBuilder(rnd.randbytes(base_sectors * SECTOR), block_size=block_size)
    for growth, writes in layers:
        b.snapshot(size=b.size + growth)
        for where, length, kind in writes:
            length = min(length, b.size)
            offset = int(where * (b.size - length))
            data = {"random": lambda n: rnd.randbytes(n), "zeros": bytes,
                    "text": lambda n: (b"layer-text " * (n // 11 + 1))[:n]}[kind](length)
            b.write(offset, data)
    return b, dict(fill=rnd.randbytes(SECTOR) if garbage else None, batmap=batmap, order="shuffle")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=chain)
def test_all_readers_agree_with_the_model(tmp_path_factory, spec):
    tmp = tmp_path_factory.mktemp("prop")
    b, options = realise(spec)
    image = tmp / "p.tgz"
    b.build(image, **options)
    expected = b.expected()
    convert_image(image, tmp / "p.raw")
    assert (tmp / "p.raw").read_bytes() == expected
    members = tmp / "members"
    members.mkdir()
    b.write_members(members, fill=options["fill"], batmap=options["batmap"])
    convert_image(members, tmp / "d.raw")
    assert (tmp / "d.raw").read_bytes() == expected
    convert_image(image, tmp / "p.vhd", output_format="vhd")
    report = check_image(tmp / "p.vhd")             # vhd-util check's rules: the one-pass layout
    assert report.ok and not report.warnings, report.problems + report.warnings
    with ChainReader([tmp / "p.vhd"]) as single:
        assert single.read(0, single.size) == expected
    with ChainReader(image) as reader:
        assert reader.size == len(expected)
        rnd = random.Random(spec[-1])
        for _ in range(5):
            off = rnd.randrange(len(expected))
            n = rnd.choice((1, 512, 5000, 1 << 20))
            assert reader.read(off, n) == expected[off:off + n]
