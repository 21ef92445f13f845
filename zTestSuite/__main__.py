"""``python -m zTestSuite``: run every suite; see zTestSuite.runner."""

from .runner import main

raise SystemExit(main())
