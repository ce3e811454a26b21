import sys
from pathlib import Path

# the shared cases module lives beside the tests (pytest runs with --import-mode=importlib)
sys.path.insert(0, str(Path(__file__).resolve().parent))
