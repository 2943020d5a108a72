"""harness.relay: xdist workers' progress lines, followed and prefixed on the controller."""

from xen_vhd_tempest.harness.relay import Follower


def test_follower_prints_complete_lines_per_worker_and_cleans_up():
    got = []
    f = Follower(got.append)
    with open(f.dir / "gw0.log", "a", buffering=1) as a, open(f.dir / "gw1.log", "a", buffering=1) as b:
        a.write("==> one\n    half")
        b.write("==> other\n")
        f.drain()
        assert got == ["[gw0] ==> one", "[gw1] ==> other"]     # a partial line waits for its end
        a.write(" a line\n")
        f.drain()
        assert got[-1] == "[gw0]     half a line"
        a.write("last\n")
    f.stop()
    assert got[-1] == "[gw0] last" and len(got) == 4
    assert not f.dir.exists()
    f.stop()                                                    # a second stop does nothing
