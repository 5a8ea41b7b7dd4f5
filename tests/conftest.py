import os
import sys

# Tests import the app, the mules and tests.support from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
