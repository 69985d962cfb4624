"""``python -m feedsim``: run the generator (configured by environment variables)."""

from feedsim.server import main

main()
