"""astrobench: the A3Net 2024 school hacks as measured, reproducible pipelines.

Every task follows one path: simulate -> files in the real on-disk format -> load (validate) ->
methods (fit) -> evaluate -> report. The command line (``astrobench``) is a thin layer over plain
functions, so a notebook can call the same steps::

    from astrobench.tasks import rings
    rings.simulate("data/rings", n=1000, mode="single")
"""

import os
import sys
from importlib.metadata import PackageNotFoundError, version

# OpenMP threads that wait for work sleep instead of spinning. Spinning is what made a run 3-5x slower when another
# process wanted the same cores (a shared JupyterHub, a busy laptop): the spinning threads took the cores from the
# threads with work. Alone, the two policies take the same time (benchmarks/shared_machine.py). OpenMP reads the
# policy once, when torch loads it; a policy the user set is kept.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("astrobench")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
