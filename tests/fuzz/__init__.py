"""Coverage-guided in-process fuzz targets (atheris/libFuzzer), one per parser and operation.

Each target takes bytes and may only raise ``converter.errors.VhdError``; libFuzzer counts any
other exception, a hang (``-timeout``) or an RSS beyond ``-rss_limit_mb`` as a crash and saves
the input under tests/fuzz_regressions/<target>/, which tests/unit/test_fuzz_targets.py replays.

    python -m tests.fuzz --target all --seconds 60
    python -m tests.fuzz --target footer --runs 100000
"""
