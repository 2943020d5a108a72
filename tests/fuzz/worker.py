"""One libFuzzer process: ``python -m tests.fuzz.worker NAME CORPUS [libFuzzer flags]``."""

import sys

import atheris

with atheris.instrument_imports(include=["converter"]):
    from converter.errors import VhdError
    from tests.fuzz.targets import TARGETS


def main():
    name = sys.argv[1]
    target = TARGETS[name][0]

    def one(data):
        try:
            target(data)
        except VhdError as exc:
            if "\n" in str(exc):
                raise AssertionError(f"multi-line error message: {exc!r}") from None

    atheris.Setup([sys.argv[0]] + sys.argv[3:] + [sys.argv[2]], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
