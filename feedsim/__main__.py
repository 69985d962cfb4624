"""``python -m feedsim``: run the generator (configured by environment variables)."""

import os

# This process serves its own registry on its own port. Inherited from an environment set up for
# gunicorn's workers, PROMETHEUS_MULTIPROC_DIR would make prometheus_client write this process's
# metrics as files into the API's directory (which the API clears at start), so drop it before
# prometheus_client is imported.
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

from feedsim.server import main

main()
