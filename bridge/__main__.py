"""``python -m bridge``: run the bridge (configured by environment variables)."""

from bridge.server import main

main()
