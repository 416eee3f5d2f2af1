"""Stellar populations from bagpipes (Carnall et al. 2018): BC03 models with Cloudy nebular emission, shipped in
its wheel (nothing is downloaded)."""

from __future__ import annotations

import contextlib
import io
import os
import warnings


def quiet_bagpipes():
    """Import and return the ``bagpipes`` module without its notices about the optional fitting samplers (the
    simulators only make models). Sets ``MPLBACKEND=Agg`` unless it is set already: bagpipes imports pyplot."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bagpipes
    return bagpipes
