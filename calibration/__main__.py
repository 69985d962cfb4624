"""``python -m calibration``: the command line (see :mod:`calibration.cli`)."""

from calibration.cli import main

raise SystemExit(main())
