"""`python -m check [galaxy.yml] [--handlers]`: run.sh's configuration check (app/check.py)
with the runner registry's specs, so a bad runner param stops run.sh before uWSGI starts.

Like wsgi.py, a composition root: app/ (the web side) and mules/ (the handler side) never
import each other; these two top-level modules join them.
"""
import sys

from app.check import main
from mules.runners import RUNNER_SPECS

if __name__ == "__main__":
    sys.exit(main(sys.argv, RUNNER_SPECS))
