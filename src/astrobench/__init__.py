"""astrobench: the A3Net 2024 school hacks as measured, reproducible pipelines.

Every task follows one path: simulate -> files in the real on-disk format -> load (validate) ->
methods (fit) -> evaluate -> report. The command line (``astrobench``) is a thin layer over plain
functions, so a notebook can call the same steps::

    from astrobench.tasks import rings
    rings.simulate("data/rings", n=1000, mode="single")
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("astrobench")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
