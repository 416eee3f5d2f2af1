"""Cherenkov-ring images (school tutorial cesarjesusvalls/A3NetRingImg): count, regress, generate.

Notebook use::

    from astrobench.tasks import rings
    images, params = rings.simulate_ring_images(1000, mode="single", seed=0)
    path = rings.simulate("my_rings", n=1000, mode="n_ring")   # the tutorial's PNG + labels.txt format
    ring_set = rings.load_rings(path)
"""

from astrobench.tasks.rings.data import (
           RingSet,
           load_ring_collection,
           load_rings,
           split_indices,
           write_rings,
)
from astrobench.tasks.rings.simulate import (
           draw_parameters,
           render_rings,
           simulate,
           simulate_ring_images,
)

__all__ = ["RingSet", "draw_parameters", "load_ring_collection", "load_rings", "render_rings", "simulate",
           "simulate_ring_images", "split_indices", "write_rings"]
