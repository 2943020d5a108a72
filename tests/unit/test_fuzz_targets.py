"""Each coverage-guided fuzz target for a few seconds, and every crasher it ever saved."""

import os
import signal

import pytest

from converter.errors import VhdError

atheris = pytest.importorskip("atheris")

from tests.fuzz import __main__ as runner  # noqa: E402
from tests.fuzz.targets import TARGETS  # noqa: E402


def saved_crashers():
    out = []
    for name in sorted(TARGETS):
        d = os.path.join(runner.REGRESSIONS, name)
        if os.path.isdir(d):
            out += [(name, os.path.join(d, f)) for f in sorted(os.listdir(d))]
    return out


def _alarm(signum, frame):
    raise TimeoutError("a saved fuzz input hangs")


@pytest.mark.parametrize("name,path", saved_crashers())
def test_saved_crashers_stay_fixed(name, path):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(5)
    try:
        with open(path, "rb") as f:
            TARGETS[name][0](f.read())
    except VhdError as exc:
        assert "\n" not in str(exc)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_only_raises_vhd_errors(name, monkeypatch, tmp_path):
    # New crashers land in a scratch directory during the suite; tox -e fuzz keeps them.
    monkeypatch.setattr(runner, "REGRESSIONS", str(tmp_path))
    r = runner.run_target(name, seconds=float(os.environ.get("XEN_VHD_FUZZ_TARGET_SECONDS", "5")))
    assert r["rc"] == 0 and not r["crashes"], "\n".join(r["tail"])
    assert r["execs"] > 100 and r["cov"] > 0
