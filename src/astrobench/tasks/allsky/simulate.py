"""Night all-sky camera frames through an equidistant fisheye lens, with cloud labels in Mommert's (2020) form.

What a frame holds (docs/tasks/allsky.md lists every number and whether it is a literature value or an estimate):

- **Geometry.** Zenith at the frame centre, horizon on a circle of radius ``R``; a sky direction at zenith angle z
  lands at r = R z / 90 deg (equidistant fisheye). A random horizon silhouette (trees, buildings) hides the lowest
  degrees; the lens is vignetted toward its rim.
- **Sky.** Airglow brightening toward the horizon (van Rhijn 1921), light pollution from a town at a random
  azimuth, twilight for a sun between -16 and -8 deg, the Moon's scattered light from the model of Krisciunas &
  Schaefer (1991, PASP 103, 1033) at a random phase and altitude with its saturated disc and halo.
- **Stars.** Number counts N(< V) = 10^(0.48 V + 0.8) over the sphere (about 4,800 stars to V = 6 and 44,000 to
  V = 8), concentrated toward a Milky Way band at a random orientation, whose diffuse glow is added; atmospheric
  extinction k_V = 0.2 mag per airmass (Kasten & Young 1989 airmass).
- **Clouds.** A fractal field (power spectrum P(k) ~ k^-3.5) on a cloud layer seen in perspective (features shrink
  toward the horizon), thresholded at the drawn cover. Optical depth tau dims what lies behind; the cloud itself
  scatters moonlight, twilight and town light, so clouds are dark against a dark sky and bright when lit. The
  twilight and moonlight scattered by the air above the deck (78 % of the column for a deck at 2 km) pass through
  it; town light, scattered low in the boundary layer, does not.
- **Detector.** Counts = bias + gain-1 Poisson photon noise + read noise + hot pixels, saturated at 65535, written as
  16-bit FITS with BZERO = 32768 like the Lowell camera's; the exposure time shortens when the sky is bright.

**Labels follow the real data's rule.** A pixel is cloudy when tau > ``TAU_CLOUDY``; a sub-region (geometry.py) is
flagged when more than ``FLAG_FRACTION`` of its sky pixels are cloudy; the frame is ``clear`` with 0 of 33 flagged,
``overcast`` with 33 of 33, ``partly_cloudy`` otherwise; cloud_fraction = flagged / 33.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astrobench.core.io import ConfigError, atomic_path
from astrobench.core.parallel import process_pool
from astrobench.tasks.allsky.data import KNOWN_CLASSES, SerialExecutor
from astrobench.tasks.allsky.geometry import N_SUBREGIONS, subregion_map

SIMULATOR_VERSION = "2"  # 2: the cloud deck dims the twilight and moonlight scattered above it
CLASSES = KNOWN_CLASSES  # clear (0 of 33 flagged), partly_cloudy, overcast (33 of 33)
FRAME_SHAPE = (256, 344)  # rows, columns: the Lowell camera's 1040 x 1392 aspect, 4x coarser
HORIZON_FRACTION = 0.94  # horizon radius / half the short side

AIR_ABOVE_CLOUDS = 0.78  # 1 - exp(-2 km / 8 km): the air above a cloud deck at 2 km (scale height 8 km)
TAU_CLOUDY = 0.4  # a pixel is cloudy above this optical depth (0.43 mag of extinction)
FLAG_FRACTION = 0.1  # a sub-region is flagged cloudy above this fraction of cloudy sky pixels

SKY = {  # every value an estimate unless a source is named; docs/tasks/allsky.md
    "dark_sky_adu_s": 15.0,  # zenith airglow per pixel: about 900 ADU in 60 s, as the Lowell camera's dark frames
    "airglow_fraction": 0.6,  # the part of the dark sky that brightens toward the horizon (van Rhijn)
    "airglow_height_ratio": 0.984,  # R_earth / (R_earth + 100 km)
    "extinction_mag": 0.2,  # k_V per airmass
    "vignetting": 0.55,  # throughput 1 - v (r/R)^2.5 at radius r
    "star_zeropoint_adu_s": 1300.0,  # a V = 0 star's rate, set so that as many stars per square degree are found as in
    # the Lowell camera's clear frames (about 2.8 per 100 deg2)
    "star_psf_sigma_px": 0.7,
    "stars_per_sphere": (0.48, 0.8),  # log10 N(< V) = a V + b
    "faintest_star_mag": 7.5,
    "milky_way_glow": 0.3, "milky_way_width_deg": 10.0, "milky_way_star_boost": 2.0,
    "light_pollution_median": 0.4, "light_pollution_dex": 0.5,  # town glow at the horizon, dark-sky units
    "dark_sky_nl": 60.0,  # the dark zenith sky in nanolamberts (Krisciunas & Schaefer's unit)
    "moon_disc_radius_px": 1.2, "moon_halo_px": 4.0,
    "cloud_power_slope": 3.5, "cloud_edge_softness": 1.0,
    "cloud_albedo_town": 2.5, "cloud_albedo_moon": 0.6, "cloud_base_brightness": 0.2,
    "bias_adu": (2000.0, 2300.0), "read_noise_adu": 8.0, "hot_pixel_fraction": 3e-4, "hot_pixel_adu_s": (2.0, 60.0),
    "saturation_adu": 65535, "target_sky_adu": 20000.0, "max_exptime_s": 60.0,
}
POPULATION = {  # how often each sky occurs (estimates); cover is the drawn cloudy fraction of the sky disc
    "p_clear": 0.38, "p_overcast": 0.24, "partial_cover": (0.05, 0.95),
    "p_moon_up": 0.45, "p_twilight": 0.12, "twilight_sun_alt_deg": (-16.0, -8.0),
    "cloud_tau": (1.0, 6.0),  # peak optical depth, log-uniform
}


@dataclass(frozen=True)
class Conditions:
    """What one frame shows (angles in degrees, brightness in dark-sky units)."""

    cover: float
    cloud_tau: float
    moon_alt: float
    moon_az: float
    moon_phase_angle: float  # 0 = full moon, 180 = new
    sun_alt: float
    sun_az: float
    light_pollution: float
    town_az: float
    galactic_pole: tuple[float, float, float]


def draw_conditions(rng: np.random.Generator) -> Conditions:
    p = POPULATION
    u = rng.uniform()
    cover = 0.0 if u < p["p_clear"] else 1.0 if u < p["p_clear"] + p["p_overcast"] else rng.uniform(*p["partial_cover"])
    moon_up = rng.uniform() < p["p_moon_up"]
    twilight = rng.uniform() < p["p_twilight"]
    pole = rng.normal(size=3)
    return Conditions(
        cover=float(cover), cloud_tau=float(np.exp(rng.uniform(*np.log(p["cloud_tau"])))),
        moon_alt=float(np.degrees(np.arcsin(rng.uniform(0.05, 1.0)))) if moon_up else -30.0,
        moon_az=float(rng.uniform(0, 360)), moon_phase_angle=float(rng.uniform(0, 180)),
        sun_alt=float(rng.uniform(*p["twilight_sun_alt_deg"])) if twilight else -30.0, sun_az=float(rng.uniform(0, 360)),
        light_pollution=float(SKY["light_pollution_median"] * 10 ** rng.normal(0, SKY["light_pollution_dex"])),
        town_az=float(rng.uniform(0, 360)), galactic_pole=tuple(float(v) for v in pole / np.linalg.norm(pole)),
    )


class FisheyeGeometry:
    """Per-pixel zenith angle, azimuth and unit vectors of a frame (computed once per frame shape)."""

    def __init__(self, shape: tuple[int, int] = FRAME_SHAPE):
        self.shape = shape
        self.cy, self.cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
        self.radius = HORIZON_FRACTION * min(shape) / 2
        rows, cols = np.indices(shape, dtype=np.float64)
        self.r = np.hypot(cols - self.cx, rows - self.cy)
        self.inside = self.r < self.radius
        self.zenith_deg = np.clip(self.r / self.radius * 90.0, 0, 90)
        self.azimuth_deg = np.degrees(np.arctan2(rows - self.cy, cols - self.cx)) % 360
        z, a = np.radians(self.zenith_deg), np.radians(self.azimuth_deg)
        self.vec = np.stack([np.sin(z) * np.cos(a), np.sin(z) * np.sin(a), np.cos(z)], axis=-1)
        self.airmass = airmass(self.zenith_deg)
        self.subregions = subregion_map(shape, self.cx, self.cy, self.radius)

    def pixel_of(self, alt_deg: float, az_deg: float) -> tuple[float, float]:
        r = (90 - alt_deg) / 90 * self.radius
        return self.cy + r * np.sin(np.radians(az_deg)), self.cx + r * np.cos(np.radians(az_deg))

    def separation_deg(self, alt_deg: float, az_deg: float) -> np.ndarray:
        return np.degrees(np.arccos(np.clip(self.vec @ _unit(alt_deg, az_deg), -1, 1)))


def airmass(zenith_deg):
    """Relative air mass at zenith angle ``zenith_deg`` (Kasten & Young 1989; 38 at the horizon)."""
    return 1 / (np.cos(np.radians(zenith_deg)) + 0.50572 * (96.07995 - np.asarray(zenith_deg)) ** -1.6364)


def _unit(alt_deg: float, az_deg: float) -> np.ndarray:
    z, a = np.radians(90 - alt_deg), np.radians(az_deg)
    return np.array([np.sin(z) * np.cos(a), np.sin(z) * np.sin(a), np.cos(z)])


def horizon_profile(rng: np.random.Generator, n_az: int = 720) -> np.ndarray:
    """Altitude (deg) of the local horizon at ``n_az`` azimuths: a low ridge, tree crowns and a few buildings."""
    az = np.linspace(0, 360, n_az, endpoint=False)
    profile = rng.uniform(0.5, 3.0) + 1.0 * np.sin(np.radians(az) * rng.integers(1, 4) + rng.uniform(0, 6.3))
    for _ in range(rng.poisson(6)):  # tree crowns: half-ellipses with ragged tops
        centre, width, height = rng.uniform(0, 360), rng.uniform(3, 14), rng.uniform(6, 28)
        d = (az - centre + 180) % 360 - 180
        crown = height * np.sqrt(np.clip(1 - (d / width) ** 2, 0, None)) * (1 + 0.15 * rng.normal(size=n_az))
        profile = np.maximum(profile, crown)
    for _ in range(rng.integers(0, 3)):  # buildings and domes: flat tops
        centre, width, height = rng.uniform(0, 360), rng.uniform(4, 20), rng.uniform(3, 12)
        d = np.abs((az - centre + 180) % 360 - 180)
        profile = np.maximum(profile, np.where(d < width / 2, height, 0))
    return profile


def fractal_field(rng: np.random.Generator, size: int = 256, slope: float = SKY["cloud_power_slope"]) -> np.ndarray:
    """(size, size) Gaussian random field with power spectrum k^-slope, zero mean and unit variance."""
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.rfftfreq(size), indexing="ij"))
    amplitude = np.where(k > 0, np.maximum(k, 1.0 / size) ** (-slope / 2), 0.0)
    noise = rng.normal(size=k.shape) + 1j * rng.normal(size=k.shape)
    field = np.fft.irfft2(noise * amplitude, s=(size, size))
    return (field - field.mean()) / field.std()


def cloud_optical_depth(geo: FisheyeGeometry, cond: Conditions, rng: np.random.Generator) -> np.ndarray:
    """(H, W) cloud optical depth: a fractal field on a flat cloud layer, seen in perspective from the camera."""
    if cond.cover <= 0:
        return np.zeros(geo.shape)
    from scipy.ndimage import map_coordinates

    size, extent = 256, 8.0  # the layer grid spans +-extent cloud heights around the zenith point
    field = fractal_field(rng, size)
    tan_z = np.tan(np.radians(np.minimum(geo.zenith_deg, 83.0)))  # the layer beyond 83 deg merges into the horizon
    rot = rng.uniform(0, 2 * np.pi)
    u = tan_z * np.cos(np.radians(geo.azimuth_deg) + rot)
    v = tan_z * np.sin(np.radians(geo.azimuth_deg) + rot)
    scale = rng.uniform(0.6, 1.6)  # cloud size relative to the layer height
    coords = np.stack([(v / scale / extent + 1) * size / 2, (u / scale / extent + 1) * size / 2])
    seen = map_coordinates(field, coords, order=1, mode="wrap")
    if cond.cover >= 1:  # overcast: a full deck with structure, never thinner than half its peak
        norm = (seen - seen[geo.inside].min()) / np.ptp(seen[geo.inside])
        return cond.cloud_tau * (0.5 + 0.5 * norm)
    threshold = np.quantile(seen[geo.inside], 1 - cond.cover)
    softness = SKY["cloud_edge_softness"]
    return cond.cloud_tau * np.clip((seen - threshold) / softness, 0, 1)


def moon_sky_brightness(geo: FisheyeGeometry, cond: Conditions) -> np.ndarray:
    """Moonlit sky in dark-sky units, Krisciunas & Schaefer (1991) eqs. 15-21 (V band, nanolamberts)."""
    if cond.moon_alt <= 0:
        return np.zeros(geo.shape)
    k = SKY["extinction_mag"]
    alpha = cond.moon_phase_angle
    illuminance = 10 ** (-0.4 * (3.84 + 0.026 * alpha + 4e-9 * alpha**4))
    rho = np.maximum(geo.separation_deg(cond.moon_alt, cond.moon_az), 1.0)
    scattering = 10**5.36 * (1.06 + np.cos(np.radians(rho)) ** 2) + 10 ** (6.15 - rho / 40)
    moon_airmass = airmass(90 - cond.moon_alt)
    nl = scattering * illuminance * 10 ** (-0.4 * k * moon_airmass) * (1 - 10 ** (-0.4 * k * geo.airmass))
    return nl / SKY["dark_sky_nl"]


def moon_illuminated_fraction(phase_angle_deg: float) -> float:
    return float((1 + np.cos(np.radians(phase_angle_deg))) / 2)


def render_frame(geo: FisheyeGeometry, cond: Conditions, rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """One frame: (counts uint16 (H, W), exposure time s, cloud optical depth (H, W), sky mask (H, W) bool)."""
    s = SKY
    alt = 90 - geo.zenith_deg
    # the horizon silhouette: sky where the altitude is above the local horizon
    profile = horizon_profile(rng)
    horizon = profile[(geo.azimuth_deg / 360 * len(profile)).astype(int) % len(profile)]
    sky = geo.inside & (alt > horizon)

    # --- sky brightness in dark-sky units -------------------------------------------------------------
    van_rhijn = 1 / np.sqrt(1 - (s["airglow_height_ratio"] * np.sin(np.radians(geo.zenith_deg))) ** 2)
    extinction = 10 ** (-0.4 * s["extinction_mag"] * (geo.airmass - 1))
    airglow = (1 - s["airglow_fraction"]) + s["airglow_fraction"] * van_rhijn * extinction**0.5
    d_town = np.abs((geo.azimuth_deg - cond.town_az + 180) % 360 - 180)
    town = cond.light_pollution * np.exp(-np.maximum(alt, 0) / 12.0) * (0.3 + 0.7 * np.exp(-((d_town / 35.0) ** 2)))
    twilight = np.zeros(geo.shape)
    if cond.sun_alt > -18:
        rho_sun = geo.separation_deg(cond.sun_alt, cond.sun_az)
        twilight = 10 ** (0.35 * (cond.sun_alt + 18)) * (0.4 + np.exp(-rho_sun / 35) + 0.4 * np.exp(-np.maximum(alt, 0) / 20))
    moon = moon_sky_brightness(geo, cond)
    # galactic latitude of each pixel for the Milky Way band
    sin_b = geo.vec @ np.asarray(cond.galactic_pole)
    milky_way = s["milky_way_glow"] * np.exp(-0.5 * (np.degrees(np.arcsin(sin_b)) / s["milky_way_width_deg"]) ** 2)
    behind_clouds = airglow + milky_way * extinction

    # --- stars -------------------------------------------------------------------------------------------
    stars = _star_layer(geo, cond, rng, extinction_mag=s["extinction_mag"])

    # --- clouds ------------------------------------------------------------------------------------------
    tau = cloud_optical_depth(geo, cond, rng)
    transmission = np.exp(-tau)
    # what the cloud scatters toward the camera: town light (strongest low and toward the town), moonlight
    # (forward-scattered near the Moon), twilight, and a faint floor
    moon_lit = 0.0
    if cond.moon_alt > 0:
        rho_moon = geo.separation_deg(cond.moon_alt, cond.moon_az)
        moon_lit = s["cloud_albedo_moon"] * 40 * moon_illuminated_fraction(cond.moon_phase_angle) * (
            0.5 + np.exp(-rho_moon / 25))
    cloud_light = (s["cloud_base_brightness"] + s["cloud_albedo_town"] * cond.light_pollution
                   * (0.3 + 0.7 * np.exp(-((d_town / 50.0) ** 2))) * (0.4 + 0.6 * np.exp(-np.maximum(alt, 0) / 25))
                   + moon_lit + 0.8 * twilight)
    # Rayleigh-scattered twilight and moonlight come from the whole air column, most of it (AIR_ABOVE_CLOUDS) above a
    # low cloud deck, so the cloud dims it; town light scatters off aerosols in the boundary layer, below the clouds
    scattered = (twilight + moon) * AIR_ABOVE_CLOUDS
    sky_units = ((behind_clouds + stars + scattered) * transmission + cloud_light * (1 - transmission) + town
                 + (twilight + moon) * (1 - AIR_ABOVE_CLOUDS))

    # --- the Moon's disc and halo, through the clouds ---------------------------------------------------
    rate = sky_units * s["dark_sky_adu_s"]
    if cond.moon_alt > 0:
        my, mx = geo.pixel_of(cond.moon_alt, cond.moon_az)
        rows, cols = np.indices(geo.shape)
        d = np.hypot(rows - my, cols - mx)
        brightness = moon_illuminated_fraction(cond.moon_phase_angle) * np.exp(-tau[int(my), int(mx)])
        rate = rate + brightness * (3e6 * (d < s["moon_disc_radius_px"]) + 2e4 / (1 + (d / s["moon_halo_px"]) ** 2) ** 1.5)

    # --- optics and ground -------------------------------------------------------------------------------
    vignetting = 1 - s["vignetting"] * np.clip(geo.r / geo.radius, 0, 1) ** 2.5
    ground = 0.08 * (airglow + town + twilight + moon).mean() * s["dark_sky_adu_s"]
    lens_ring = np.exp(-0.5 * ((geo.r - 1.12 * geo.radius) / (0.05 * geo.radius)) ** 2)
    rate = np.where(sky, rate * vignetting, np.where(geo.inside, ground, 0.15 * ground * lens_ring))

    # --- detector ----------------------------------------------------------------------------------------
    zenith_rate = float(np.median(rate[geo.r < 0.2 * geo.radius]))
    exptime = float(min(s["max_exptime_s"], s["target_sky_adu"] / max(zenith_rate, 1e-3)))
    exptime = float(np.round(exptime, 2)) if exptime < s["max_exptime_s"] else s["max_exptime_s"]
    n_hot = rng.binomial(rate.size, s["hot_pixel_fraction"])
    dark = np.zeros(rate.size)
    dark[rng.integers(0, rate.size, n_hot)] = rng.uniform(*s["hot_pixel_adu_s"], n_hot)
    expected = np.clip((rate + dark.reshape(geo.shape)) * exptime, 0, 1e9)
    # gain 1: Poisson photon noise, drawn as its Gaussian limit where more than 50 electrons are expected
    electrons = expected + np.sqrt(expected) * rng.standard_normal(geo.shape)
    few = expected < 50
    electrons[few] = rng.poisson(expected[few])
    counts = rng.uniform(*s["bias_adu"]) + electrons + rng.normal(0, s["read_noise_adu"], geo.shape)
    counts = np.clip(np.round(counts), 0, s["saturation_adu"]).astype(np.uint16)
    return counts, exptime, tau, sky


def _star_layer(geo: FisheyeGeometry, cond: Conditions, rng: np.random.Generator, extinction_mag: float) -> np.ndarray:
    """Stars above the horizon in dark-sky units per pixel, blurred by the lens PSF."""
    from scipy.ndimage import gaussian_filter

    s = SKY
    a, b = s["stars_per_sphere"]
    n_hemisphere = int(0.5 * 10 ** (a * s["faintest_star_mag"] + b))
    boost = s["milky_way_star_boost"]
    # uniform on the upper hemisphere, thinned to 1 / (1 + boost) away from the Milky Way
    n_draw = int(n_hemisphere * (1 + boost) / (1 + boost * 0.25))
    cos_z = rng.uniform(0, 1, n_draw)
    az = rng.uniform(0, 2 * np.pi, n_draw)
    sin_z = np.sqrt(1 - cos_z**2)
    vec = np.stack([sin_z * np.cos(az), sin_z * np.sin(az), cos_z], axis=1)
    b_deg = np.degrees(np.arcsin(np.clip(vec @ np.asarray(cond.galactic_pole), -1, 1)))
    keep = rng.uniform(0, 1 + boost, n_draw) < 1 + boost * np.exp(-0.5 * (b_deg / 15) ** 2)
    cos_z, az = cos_z[keep], az[keep]
    mag = s["faintest_star_mag"] + np.log10(rng.uniform(1e-6, 1, len(cos_z))) / a
    z_deg = np.degrees(np.arccos(cos_z))
    flux = s["star_zeropoint_adu_s"] * 10 ** (-0.4 * (mag + extinction_mag * airmass(z_deg))) / s["dark_sky_adu_s"]
    r = z_deg / 90 * geo.radius
    row = np.round(geo.cy + r * np.sin(az)).astype(int)
    col = np.round(geo.cx + r * np.cos(az)).astype(int)
    layer = np.zeros(geo.shape)
    ok = (row >= 0) & (row < geo.shape[0]) & (col >= 0) & (col < geo.shape[1])
    np.add.at(layer, (row[ok], col[ok]), flux[ok])
    return gaussian_filter(layer, s["star_psf_sigma_px"])


def subregion_flags(tau: np.ndarray, sky: np.ndarray, subregions: np.ndarray) -> np.ndarray:
    """(33,) 0/1: flagged where more than FLAG_FRACTION of the sub-region's sky pixels have tau > TAU_CLOUDY."""
    cloudy = (tau > TAU_CLOUDY) & sky
    counted = sky & (subregions >= 0)
    n_sky = np.bincount(subregions[counted], minlength=N_SUBREGIONS)
    n_cloudy = np.bincount(subregions[counted & cloudy], minlength=N_SUBREGIONS)
    return (n_cloudy > FLAG_FRACTION * np.maximum(n_sky, 1)).astype(np.uint8)


def frame_label(flags: np.ndarray) -> str:
    n = int(np.sum(flags))
    return CLASSES[0] if n == 0 else CLASSES[2] if n == len(flags) else CLASSES[1]


def simulate_frame(index: int, seed: int, shape: tuple[int, int] = FRAME_SHAPE, geo: FisheyeGeometry | None = None):
    """Frame ``index`` of the simulation with ``seed``: (counts, exptime_s, flags, truth dict); independent of which
    process renders it."""
    rng = np.random.default_rng([seed, 17, index])
    geo = geo or FisheyeGeometry(shape)
    cond = draw_conditions(rng)
    counts, exptime, tau, sky = render_frame(geo, cond, rng)
    flags = subregion_flags(tau, sky, geo.subregions)
    truth = {"cloud_cover_pixels": float(np.mean(tau[sky] > TAU_CLOUDY)), "moon_alt_deg": cond.moon_alt,
             "moon_illumination": moon_illuminated_fraction(cond.moon_phase_angle) if cond.moon_alt > 0 else 0.0,
             "sun_alt_deg": cond.sun_alt, "light_pollution": cond.light_pollution}
    return counts, exptime, flags, truth


def _write_chunk(args) -> list[dict]:
    folder, indices, seed, shape, format = args
    geo = FisheyeGeometry(shape)
    rows = []
    for i in indices:
        counts, exptime, flags, truth = simulate_frame(i, seed, shape, geo)
        name = f"frames/{i:06d}.{'fits' if format == 'fits' else 'png'}"
        _write_frame(Path(folder) / name, counts, exptime)
        rows.append({"file": name, "label": frame_label(flags), "cloud_fraction": f"{flags.mean():.4f}",
                     "exptime_s": f"{exptime:.2f}", "subregion_flags": "".join(map(str, flags)),
                     **{k: f"{v:.4f}" for k, v in truth.items()}})
    return rows


def _write_frame(path: Path, counts: np.ndarray, exptime: float) -> None:
    if path.suffix == ".fits":
        from astropy.io import fits

        hdu = fits.PrimaryHDU(counts)  # uint16 -> BITPIX 16 with BZERO 32768, as the Lowell camera writes
        hdu.header["EXPTIME"] = (exptime, "exposure length (seconds)")
        hdu.header["CREATOR"] = f"astrobench allsky simulator {SIMULATOR_VERSION}"
        hdu.writeto(path, overwrite=True)
    else:
        from PIL import Image

        Image.fromarray(counts).save(path)  # 16-bit greyscale PNG; the exposure time is in the manifest


def simulate(out: str | Path, n: int = 1000, seed: int = 0, format: str | None = None, n_jobs: int = 2,
             shape: tuple[int, int] = FRAME_SHAPE, progress: bool = True) -> Path:
    """Write ``n`` simulated frames and ``manifest.csv`` (file, label, cloud_fraction, exptime_s, subregion_flags
    and the truth columns) to the folder ``out``; returns the manifest's path."""
    from rich.progress import track

    format = format or "fits"
    if format not in ("fits", "png"):
        raise ConfigError(f"allsky writes 16-bit FITS or PNG frames, not {format!r}")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    out = Path(out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    n_jobs = max(1, min(n_jobs, os.cpu_count() or 1))
    chunks = [(str(out), list(range(a, min(a + 50, n))), seed, tuple(shape), format) for a in range(0, n, 50)]
    rows: list[dict] = []
    with process_pool(n_jobs) if n_jobs > 1 and len(chunks) > 1 else SerialExecutor() as pool:
        for part in track(pool.map(_write_chunk, chunks), total=len(chunks), description="allsky: rendering frames",
                          disable=not progress, transient=True):
            rows.extend(part)
    manifest = out / "manifest.csv"
    with atomic_path(manifest) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return manifest

