"""``python -m zCLI`` is the same as the ``zcli`` command."""

from .cli import main

raise SystemExit(main())
