"""Sky-condition classification of all-sky camera frames (Mommert 2020): clear / partly cloudy / overcast and
33 sub-region cloud flags, from a small CNN, a fine-tuned MobileNetV2 and gradient boosting on hand-made features.

Notebook use::

    from astrobench.tasks import allsky
    manifest = allsky.simulate("frames", n=500)                  # manifest.csv + 16-bit FITS frames
    frames = allsky.load_frames(manifest)                        # or a folder per class of your camera's frames
    frames.images.shape, frames.class_names, frames.flags.shape  # (500, 2, 64, 64), [...], (500, 33)
"""

from astrobench.tasks.allsky.data import FrameSet, find_sky_circle, load_frames, read_frame, split_indices
from astrobench.tasks.allsky.geometry import subregion_map
from astrobench.tasks.allsky.simulate import simulate, simulate_frame
from astrobench.tasks.allsky.task import simulated_frames

__all__ = ["FrameSet", "find_sky_circle", "load_frames", "read_frame", "simulate", "simulate_frame",
           "simulated_frames", "split_indices", "subregion_map"]
