"""zBifrost_Hostile again, on the sans-I/O adapter: the same attacks on one real
``zcli serve --adapter sansio`` process (in fast mode when zCLI[fast] is installed, as
``zcli serve`` runs by default), with the same bounds and the same clean client."""

from __future__ import annotations

import sys
import unittest

from . import zBifrost_Hostile_Test as hostile

SERIAL = hostile.SERIAL


def setUpModule() -> None:  # noqa: N802 (unittest's name)
    hostile.start_server("--adapter", "sansio")


def tearDownModule() -> None:  # noqa: N802 (unittest's name)
    hostile.tearDownModule()


class TestFuzz(hostile.TestFuzz):
    pass


class TestFloods(hostile.TestFloods):
    pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(unittest.main())
