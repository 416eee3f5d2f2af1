"""Night all-sky camera frames through an equidistant fisheye lens, with cloud labels in Mommert's (2020) form.

What a frame holds (docs/tasks/allsky.md lists every number and whether it is a literature value or an estimate):

- **Geometry.** Zenith at the circle's centre, horizon on a circle of radius ``R``; a sky direction at zenith angle
  z lands at r = R z / 90 deg (equidistant fisheye). A horizon silhouette per camera (trees, buildings) hides the
  lowest degrees.
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
- **Camera** (``CameraModel``, version 3: drawn per camera from CAMERA_RANGES, or ``fixed_camera``): frame size and
  the circle's place in it, vignetting, lens rim and glow, photon and read noise, hot pixels, pedestal, gain,
  saturation and blooming, fixed or automatic exposure, and the file: 16-bit FITS (BZERO = 32768 like the Lowell
  camera's), 8-bit sRGB JPEG or PNG, or 16-bit PNG.

**Labels follow the real data's rule.** A pixel is cloudy when tau > ``TAU_CLOUDY``; a sub-region (geometry.py) is
flagged when more than ``FLAG_FRACTION`` of its sky pixels are cloudy; the frame is ``clear`` with 0 of 33 flagged,
``overcast`` with 33 of 33, ``partly_cloudy`` otherwise; cloud_fraction = flagged / 33.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from astrobench.core.io import ConfigError, atomic_path
from astrobench.core.parallel import executor
from astrobench.tasks.allsky.data import KNOWN_CLASSES
from astrobench.tasks.allsky.geometry import N_SUBREGIONS, subregion_map

SIMULATOR_VERSION = "5"  # 5: a Milky Way brightest toward the galactic centre, with dust lanes; 4: a cloud dims the
# stars by >= 1 mag, thicker decks, sub-threshold haze; 3: domain
# randomisation over cameras; 2: the cloud deck dims the light scattered above it
CLASSES = KNOWN_CLASSES  # clear (0 of 33 flagged), partly_cloudy, overcast (33 of 33)
FRAME_SHAPE = (256, 344)  # rows, columns: the Lowell camera's 1040 x 1392 aspect, 4x coarser
HORIZON_FRACTION = 0.94  # horizon radius / half the short side

AIR_ABOVE_CLOUDS = 0.78  # 1 - exp(-2 km / 8 km): the air above a cloud deck at 2 km (scale height 8 km)
TAU_CLOUDY = 0.4 * np.log(10)  # a pixel is cloudy where the cloud dims the stars behind it by 1 mag or more (tau 0.92)
FLAG_FRACTION = 0.1  # a sub-region is flagged cloudy above this fraction of cloudy sky pixels

SKY = {  # every value an estimate unless a source is named; docs/tasks/allsky.md
    "dark_sky_adu_s": 15.0,  # zenith airglow per pixel: about 900 ADU in 60 s, as the Lowell camera's dark frames
    "airglow_fraction": 0.6,  # the part of the dark sky that brightens toward the horizon (van Rhijn)
    "airglow_height_ratio": 0.984,  # R_earth / (R_earth + 100 km)
    "extinction_mag": 0.2,  # k_V per airmass
    "star_zeropoint_adu_s": 1300.0,  # a V = 0 star's rate, set so that as many stars per square degree are found as in
    # the Lowell camera's clear frames (about 2.8 per 100 deg2)
    "star_psf_sigma_px": 0.7,
    "stars_per_sphere": (0.48, 0.8),  # log10 N(< V) = a V + b
    "faintest_star_mag": 7.5,
    # integrated starlight of the band: from about 60 S10 toward the anticentre to 250 S10 at the brightest
    # (Cinzano's review of Roach & Gordon 1973), against a dark zenith sky of about 220 S10 (Leinert et al. 1998)
    "milky_way_glow": (0.25, 1.1), "milky_way_centre_deg": 50.0, "milky_way_lane_depth": 0.6,
    "milky_way_width_deg": 10.0, "milky_way_star_boost": 2.0,
    "light_pollution_median": 0.4, "light_pollution_dex": 0.5,  # town glow at the horizon, dark-sky units
    "dark_sky_nl": 60.0,  # the dark zenith sky in nanolamberts (Krisciunas & Schaefer's unit)
    "moon_disc_radius_px": 1.2, "moon_halo_px": 4.0,
    "cloud_power_slope": 3.5, "cloud_edge_softness": 1.0,
    "cloud_albedo_town": 2.5, "cloud_albedo_moon": 0.6, "cloud_base_brightness": 0.2,
    "target_sky_adu": 20000.0, "max_exptime_s": 60.0,  # the fixed camera's auto exposure; every camera's longest
}
POPULATION = {  # how often each sky occurs (estimates); cover is the drawn cloudy fraction of the sky disc
    "p_clear": 0.38, "p_overcast": 0.24, "partial_cover": (0.05, 0.95),
    "p_moon_up": 0.45, "p_twilight": 0.12, "twilight_sun_alt_deg": (-16.0, -8.0),
    "cloud_tau": (2.0, 8.0),  # peak optical depth, log-uniform; an overcast deck is at least half its peak
    "p_haze": 0.35, "haze_tau": (0.05, 0.6),  # a thin veil over any sky, below TAU_CLOUDY on its own
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
    haze_tau: float = 0.0  # a thin veil over the whole sky (0: none)
    galactic_centre_deg: float = 0.0  # where in the galactic plane the centre lies (an angle about the pole)


def draw_conditions(rng: np.random.Generator,
                    light_pollution_median: float = SKY["light_pollution_median"]) -> Conditions:
    p = POPULATION
    u = rng.uniform()
    cover = 0.0 if u < p["p_clear"] else 1.0 if u < p["p_clear"] + p["p_overcast"] else rng.uniform(*p["partial_cover"])
    moon_up = rng.uniform() < p["p_moon_up"]
    twilight = rng.uniform() < p["p_twilight"]
    pole = rng.normal(size=3)
    return Conditions(
        cover=float(cover), cloud_tau=float(np.exp(rng.uniform(*np.log(p["cloud_tau"])))),
        haze_tau=float(rng.uniform(*p["haze_tau"])) if rng.uniform() < p["p_haze"] else 0.0,
        moon_alt=float(np.degrees(np.arcsin(rng.uniform(0.05, 1.0)))) if moon_up else -30.0,
        moon_az=float(rng.uniform(0, 360)), moon_phase_angle=float(rng.uniform(0, 180)),
        sun_alt=float(rng.uniform(*p["twilight_sun_alt_deg"])) if twilight else -30.0,
        sun_az=float(rng.uniform(0, 360)),
        light_pollution=float(light_pollution_median * 10 ** rng.normal(0, SKY["light_pollution_dex"])),
        town_az=float(rng.uniform(0, 360)), galactic_pole=tuple(float(v) for v in pole / np.linalg.norm(pole)),
        galactic_centre_deg=float(rng.uniform(0, 360)),
    )


class FisheyeGeometry:
    """Per-pixel zenith angle, azimuth and unit vectors of a frame (computed once per camera): the horizon circle
    at (cx, cy) with ``radius`` pixels, by default centred with HORIZON_FRACTION of half the short side."""

    def __init__(self, shape: tuple[int, int] = FRAME_SHAPE, cx: float | None = None, cy: float | None = None,
                 radius: float | None = None):
        self.shape = shape
        self.cy = (shape[0] - 1) / 2 if cy is None else cy
        self.cx = (shape[1] - 1) / 2 if cx is None else cx
        self.radius = HORIZON_FRACTION * min(shape) / 2 if radius is None else radius
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
    ridge = rng.uniform(0.0, 1.0)  # distant terrain, degrees
    profile = np.maximum(ridge + 0.3 * np.sin(np.radians(az) * rng.integers(1, 4) + rng.uniform(0, 6.3)), 0.0)
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
    """(H, W) cloud optical depth: a fractal field on a flat cloud layer, seen in perspective from the camera, plus
    the frame's thin haze (a smooth veil, on its own below TAU_CLOUDY; it can tip a thin cloud edge over)."""
    tau = np.zeros(geo.shape)
    if cond.haze_tau > 0:
        veil = _layer_field(geo, rng, slope=4.0)
        tau = tau + cond.haze_tau * (0.7 + 0.3 * (veil - veil[geo.inside].min()) / np.ptp(veil[geo.inside]))
    if cond.cover <= 0:
        return tau
    seen = _layer_field(geo, rng)
    if cond.cover >= 1:  # overcast: a full deck with structure, never thinner than half its peak
        norm = (seen - seen[geo.inside].min()) / np.ptp(seen[geo.inside])
        return tau + cond.cloud_tau * (0.5 + 0.5 * norm)
    threshold = np.quantile(seen[geo.inside], 1 - cond.cover)
    softness = SKY["cloud_edge_softness"]
    return tau + cond.cloud_tau * np.clip((seen - threshold) / softness, 0, 1)


def _layer_field(geo: FisheyeGeometry, rng: np.random.Generator, slope: float = SKY["cloud_power_slope"]) -> np.ndarray:
    """(H, W) a fractal field on a flat layer above the camera, seen in perspective (features shrink toward the
    horizon)."""
    from scipy.ndimage import map_coordinates

    size, extent = 256, 8.0  # the layer grid spans +-extent layer heights around the zenith point
    field = fractal_field(rng, size, slope)
    tan_z = np.tan(np.radians(np.minimum(geo.zenith_deg, 83.0)))  # the layer beyond 83 deg merges into the horizon
    rot = rng.uniform(0, 2 * np.pi)
    u = tan_z * np.cos(np.radians(geo.azimuth_deg) + rot)
    v = tan_z * np.sin(np.radians(geo.azimuth_deg) + rot)
    scale = rng.uniform(0.6, 1.6)  # cloud size relative to the layer height
    coords = np.stack([(v / scale / extent + 1) * size / 2, (u / scale / extent + 1) * size / 2])
    return map_coordinates(field, coords, order=1, mode="wrap")


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


def render_frame(geo: FisheyeGeometry, cond: Conditions, rng: np.random.Generator, camera: CameraModel | None = None,
                 profile: np.ndarray | None = None) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """One frame: (counts (H, W), exposure time s, cloud optical depth (H, W), sky mask (H, W) bool).

    The sky is rendered on ``geo`` (the camera's sky at the internal resolution) and imaged by ``camera`` (default:
    the fixed camera of ``geo``'s shape) with ``expose``; counts have the camera's shape and format, while tau and
    the sky mask stay on ``geo``."""
    camera = camera or fixed_camera(geo.shape)
    s = {**SKY, **camera.sky}
    alt = 90 - geo.zenith_deg
    # the horizon silhouette: sky where the altitude is above the local horizon (one per camera: trees stay put)
    profile = horizon_profile(rng) if profile is None else profile
    horizon = profile[(geo.azimuth_deg / 360 * len(profile)).astype(int) % len(profile)]
    sky = geo.inside & (alt > horizon)

    # --- sky brightness in dark-sky units -------------------------------------------------------------
    van_rhijn = 1 / np.sqrt(1 - (s["airglow_height_ratio"] * np.sin(np.radians(geo.zenith_deg))) ** 2)
    extinction = 10 ** (-0.4 * s["extinction_mag"] * (geo.airmass - 1))
    airglow = (1 - s["airglow_fraction"]) + s["airglow_fraction"] * van_rhijn * extinction**0.5
    # angle from the town's direction on the horizon (an azimuth difference would leave a cusp at the zenith)
    d_town = geo.separation_deg(0.0, cond.town_az)
    town = cond.light_pollution * np.exp(-np.maximum(alt, 0) / 12.0) * (0.3 + 0.7 * np.exp(-((d_town / 35.0) ** 2)))
    twilight = np.zeros(geo.shape)
    if cond.sun_alt > -18:
        rho_sun = geo.separation_deg(cond.sun_alt, cond.sun_az)
        twilight = 10 ** (0.35 * (cond.sun_alt + 18)) * (0.4 + np.exp(-rho_sun / 35)
                                                         + 0.4 * np.exp(-np.maximum(alt, 0) / 20))
    moon = moon_sky_brightness(geo, cond)
    milky_way = milky_way_glow(geo, cond, rng, s)
    behind_clouds = airglow + milky_way * extinction

    # --- stars -------------------------------------------------------------------------------------------
    stars = _star_layer(geo, cond, rng, extinction_mag=s["extinction_mag"], zeropoint=s["star_zeropoint_adu_s"])

    # --- clouds ------------------------------------------------------------------------------------------
    tau = cloud_optical_depth(geo, cond, rng)
    transmission = np.exp(-tau)
    cloud_light = _cloud_light(geo, cond, s, d_town, alt, twilight)
    # Rayleigh-scattered twilight and moonlight come from the whole air column, most of it (AIR_ABOVE_CLOUDS) above a
    # low cloud deck, so the cloud dims it; town light scatters off aerosols in the boundary layer, below the clouds
    scattered = (twilight + moon) * AIR_ABOVE_CLOUDS
    sky_units = ((behind_clouds + stars + scattered) * transmission + cloud_light * (1 - transmission) + town
                 + (twilight + moon) * (1 - AIR_ABOVE_CLOUDS))

    rate = _moon_disc(sky_units * s["dark_sky_adu_s"], geo, cond, tau, s)

    counts, exptime = expose(rate, sky, airglow + town + twilight + moon, geo, camera, rng)
    return counts, exptime, tau, sky


def _cloud_light(geo: FisheyeGeometry, cond: Conditions, s: dict, d_town: np.ndarray, alt: np.ndarray,
                 twilight: np.ndarray) -> np.ndarray:
    """What the cloud scatters toward the camera, in dark-sky units: town light (strongest low and toward the
    town, ``d_town`` degrees away), moonlight (forward-scattered near the Moon), twilight, and a faint floor."""
    moon_lit = 0.0
    if cond.moon_alt > 0:
        rho_moon = geo.separation_deg(cond.moon_alt, cond.moon_az)
        moon_lit = s["cloud_albedo_moon"] * 40 * moon_illuminated_fraction(cond.moon_phase_angle) * (
            0.5 + np.exp(-rho_moon / 25))
    return (s["cloud_base_brightness"] + s["cloud_albedo_town"] * cond.light_pollution
            * (0.3 + 0.7 * np.exp(-((d_town / 50.0) ** 2))) * (0.4 + 0.6 * np.exp(-np.maximum(alt, 0) / 25))
            + moon_lit + 0.8 * twilight)


def _moon_disc(rate: np.ndarray, geo: FisheyeGeometry, cond: Conditions, tau: np.ndarray, s: dict) -> np.ndarray:
    """``rate`` [ADU/s] with the Moon's disc and halo added, dimmed by the cloud in front of the Moon."""
    if cond.moon_alt <= 0:
        return rate
    my, mx = geo.pixel_of(cond.moon_alt, cond.moon_az)
    rows, cols = np.indices(geo.shape)
    d = np.hypot(rows - my, cols - mx)
    iy, ix = int(np.clip(my, 0, geo.shape[0] - 1)), int(np.clip(mx, 0, geo.shape[1] - 1))  # may lie off the frame
    brightness = moon_illuminated_fraction(cond.moon_phase_angle) * np.exp(-tau[iy, ix])
    halo = 2e4 / (1 + (d / s["moon_halo_px"]) ** 2) ** 1.5
    return rate + brightness * (3e6 * (d < s["moon_disc_radius_px"]) + halo)


def milky_way_glow(geo: FisheyeGeometry, cond: Conditions, rng: np.random.Generator, s: dict = SKY) -> np.ndarray:
    """(H, W) the Milky Way's diffuse glow in dark-sky units: a band of Gaussian width in galactic latitude, brightest
    toward the galactic centre (Gaussian in longitude), crossed by dust lanes (a fractal field in (l, b), deepest
    on the plane)."""
    from scipy.ndimage import map_coordinates

    pole = np.asarray(cond.galactic_pole, dtype=float)
    ref = np.array([0.0, 0.0, 1.0]) if abs(pole[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(pole, ref)
    u /= np.linalg.norm(u)
    phi = np.radians(cond.galactic_centre_deg)
    centre = np.cos(phi) * u + np.sin(phi) * np.cross(pole, u)
    b_deg = np.degrees(np.arcsin(np.clip(geo.vec @ pole, -1, 1)))
    l_deg = np.degrees(np.arctan2(geo.vec @ np.cross(pole, centre), geo.vec @ centre))  # 0 at the centre
    faint, bright = s["milky_way_glow"]
    amplitude = faint + (bright - faint) * np.exp(-((l_deg / s["milky_way_centre_deg"]) ** 2))
    size = 256
    field = fractal_field(rng, size, slope=3.0)
    lanes = map_coordinates(field, [np.clip((b_deg / 60 + 0.5) * size, 0, size - 1), (l_deg + 180) / 360 * size],
                            order=1, mode="wrap")
    dust = s["milky_way_lane_depth"] * np.clip(lanes - 0.5, 0, 1.5) / 1.5 * np.exp(-0.5 * (b_deg / 4.0) ** 2)
    return amplitude * (1 - dust) * np.exp(-0.5 * (b_deg / s["milky_way_width_deg"]) ** 2)


def _star_layer(geo: FisheyeGeometry, cond: Conditions, rng: np.random.Generator, extinction_mag: float,
                zeropoint: float = SKY["star_zeropoint_adu_s"]) -> np.ndarray:
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
    flux = zeropoint * 10 ** (-0.4 * (mag + extinction_mag * airmass(z_deg))) / s["dark_sky_adu_s"]
    r = z_deg / 90 * geo.radius
    row = np.round(geo.cy + r * np.sin(az)).astype(int)
    col = np.round(geo.cx + r * np.cos(az)).astype(int)
    layer = np.zeros(geo.shape)
    ok = (row >= 0) & (row < geo.shape[0]) & (col >= 0) & (col < geo.shape[1])
    np.add.at(layer, (row[ok], col[ok]), flux[ok])
    return gaussian_filter(layer, s["star_psf_sigma_px"])


# --- simulator version 3: the camera, randomised over what real all-sky cameras differ in ---------------------

CAMERA_RANGES = {  # docs/tasks/allsky.md gives the source of each range, or marks it as our estimate
    "long_side_px": (480, 1400),  # log-uniform; aspect one of ASPECTS
    "radius_fraction": (0.85, 1.02),  # horizon radius / half the short side (the Lowell camera: 495 / 520 = 0.95)
    "centre_offset": (0.06, 0.03),  # |centre - frame centre| / (width, height), uniform within +-
    "vignetting": (0.15, 0.7), "vignetting_power": (2.0, 6.0),  # throughput 1 - v (r/R)^p
    "rim_glow": (0.0, 0.6), "rim_glow_radius": (1.05, 1.35), "rim_glow_width": (0.03, 0.12),  # x the sky at the rim
    "gap_level": (0.0, 0.08),  # the dark lens barrel between horizon and glow, x the mean sky
    "dark_sky_e_s": (3.0, 60.0),  # dark zenith sky, electrons per second per pixel (log-uniform)
    "gain_adu_per_e": (0.3, 3.0),  # log-uniform
    "pedestal_adu": (0.0, 3000.0), "read_noise_e": (2.0, 15.0),
    "hot_pixel_fraction": (1e-5, 1e-3),  # log-uniform
    "fixed_exptime_s": (30.0, 45.0, 60.0), "p_auto_exposure": 0.6,
    "auto_target_fraction": (0.15, 0.45),  # auto exposure: zenith at this fraction of full scale
    "bloom_px": (0.0, 0.04),  # charge bleeding along columns from saturated pixels, x the short side
    "formats": {"fits": 0.45, "jpeg": 0.35, "png8": 0.1, "png16": 0.1},
    "jpeg_quality": (60, 95),
    "site_light_pollution": (0.1, 1.5),  # median town glow at the horizon of a site, dark-sky units (log-uniform)
    "cloud_albedo_town": (1.0, 4.0), "cloud_base_brightness": (0.05, 0.4), "extinction_mag": (0.12, 0.3),
}
ASPECTS = (4 / 3, 3 / 2, 1.0, 5 / 4)
INTERNAL_RADIUS_PX = 128  # the sky is rendered with this horizon radius, then resampled to the camera's pixels


@dataclass(frozen=True)
class CameraModel:
    """One simulated all-sky camera: frame size and where the sky lies in it, optics, detector and file format.
    ``sky`` overrides SKY entries for this site (light pollution, cloud brightness, extinction)."""

    shape: tuple[int, int]
    cx: float
    cy: float
    radius: float
    vignetting: float = 0.55
    vignetting_power: float = 2.5
    rim_glow: float = 0.1
    rim_glow_radius: float = 1.12
    rim_glow_width: float = 0.05
    gap_level: float = 0.02
    dark_sky_e_s: float = 15.0
    gain_adu_per_e: float = 1.0
    pedestal_adu: float = 2150.0
    read_noise_e: float = 8.0
    hot_pixel_fraction: float = 3e-4
    exposure_s: float | None = None  # None: auto exposure
    auto_target_fraction: float = 0.3
    bloom_px: float = 0.0
    format: str = "fits"
    jpeg_quality: int = 90
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB gains of a colour camera's grey sky
    sky: dict = field(default_factory=dict)

    @property
    def full_scale(self) -> float:
        return 65535.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out


def draw_camera(rng: np.random.Generator) -> CameraModel:
    """A camera drawn from CAMERA_RANGES."""
    c = CAMERA_RANGES
    loguniform = lambda lo, hi: float(np.exp(rng.uniform(np.log(lo), np.log(hi))))  # noqa: E731
    long_side = loguniform(*c["long_side_px"])
    aspect = ASPECTS[rng.integers(len(ASPECTS))]
    shape = (int(round(long_side / aspect)), int(round(long_side)))
    h, w = shape
    radius = rng.uniform(*c["radius_fraction"]) * min(h, w) / 2
    cx = (w - 1) / 2 + rng.uniform(-1, 1) * c["centre_offset"][0] * w
    cy = (h - 1) / 2 + rng.uniform(-1, 1) * c["centre_offset"][1] * h
    formats, weights = zip(*c["formats"].items())
    fmt = str(rng.choice(formats, p=np.asarray(weights) / sum(weights)))
    auto = rng.uniform() < c["p_auto_exposure"]
    tint = np.exp(rng.normal(0, 0.08, 3)) if fmt == "jpeg" else np.ones(3)
    return CameraModel(
        shape=shape, cx=float(cx), cy=float(cy), radius=float(radius),
        vignetting=float(rng.uniform(*c["vignetting"])), vignetting_power=float(rng.uniform(*c["vignetting_power"])),
        rim_glow=float(rng.uniform(*c["rim_glow"])), rim_glow_radius=float(rng.uniform(*c["rim_glow_radius"])),
        rim_glow_width=float(rng.uniform(*c["rim_glow_width"])), gap_level=float(rng.uniform(*c["gap_level"])),
        dark_sky_e_s=loguniform(*c["dark_sky_e_s"]), gain_adu_per_e=loguniform(*c["gain_adu_per_e"]),
        pedestal_adu=float(rng.uniform(*c["pedestal_adu"])) if fmt in ("fits", "png16") else float(rng.uniform(0, 600)),
        read_noise_e=float(rng.uniform(*c["read_noise_e"])),
        hot_pixel_fraction=loguniform(*c["hot_pixel_fraction"]),
        exposure_s=None if auto else float(rng.choice(c["fixed_exptime_s"])),
        auto_target_fraction=float(rng.uniform(*c["auto_target_fraction"])),
        bloom_px=float(rng.uniform(*c["bloom_px"]) * min(h, w)), format=fmt,
        jpeg_quality=int(rng.integers(*c["jpeg_quality"])), colour=tuple(float(t) for t in tint / tint.mean()),
        sky={"light_pollution_median": loguniform(*c["site_light_pollution"]),
             "cloud_albedo_town": float(rng.uniform(*c["cloud_albedo_town"])),
             "cloud_base_brightness": float(rng.uniform(*c["cloud_base_brightness"])),
             "extinction_mag": float(rng.uniform(*c["extinction_mag"]))},
    )


def fixed_camera(shape: tuple[int, int] = FRAME_SHAPE, **fields) -> CameraModel:
    """The one camera of simulator version 2 (16-bit FITS, auto exposure, gentle vignetting), centred in ``shape``;
    ``fields`` replace any CameraModel field."""
    h, w = shape
    base = CameraModel(shape=tuple(shape), cx=(w - 1) / 2, cy=(h - 1) / 2, radius=HORIZON_FRACTION * min(h, w) / 2,
                       rim_glow=0.15 * 0.08, gap_level=0.08, exposure_s=None,
                       auto_target_fraction=SKY["target_sky_adu"] / 65535)
    return replace(base, **fields) if fields else base


def camera_sky_geometry(camera: CameraModel) -> FisheyeGeometry:
    """The internal grid on which a camera's sky is rendered: the camera's frame scaled so that the horizon radius is
    INTERNAL_RADIUS_PX (never up-sampled)."""
    scale = min(1.0, INTERNAL_RADIUS_PX / camera.radius)
    h, w = camera.shape
    shape = (max(8, int(round(h * scale))), max(8, int(round(w * scale))))
    sy, sx = shape[0] / h, shape[1] / w
    return FisheyeGeometry(shape, (camera.cx + 0.5) * sx - 0.5, (camera.cy + 0.5) * sy - 0.5, camera.radius * sx)


def expose(rate: np.ndarray, sky: np.ndarray, diffuse: np.ndarray, geo: FisheyeGeometry, camera: CameraModel,
           rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Image the sky (``rate`` in SKY["dark_sky_adu_s"] units of dark sky, on ``geo``) with ``camera``: vignetting, lens
    rim and glow, resampling to the camera's pixels, exposure, photon and read noise, hot pixels, pedestal, gain,
    saturation and blooming, and the file's encoding. Returns (counts (H, W): uint16, or uint8 (H, W[, 3]) for 8-bit
    formats, gamma-encoded), exposure time s)."""
    from PIL import Image

    sky_units = rate / SKY["dark_sky_adu_s"]
    mean_sky = float(np.mean(diffuse[geo.inside])) if geo.inside.any() else 1.0
    r = geo.r / geo.radius
    vignetting = 1 - camera.vignetting * np.clip(r, 0, 1) ** camera.vignetting_power
    # the glow is sky light scattered inside the lens barrel: a fraction of the sky at the (vignetted) rim
    rim_sky = mean_sky * (1 - camera.vignetting)
    glow = camera.rim_glow * rim_sky * np.exp(-0.5 * ((r - camera.rim_glow_radius) / camera.rim_glow_width) ** 2)
    below = np.where(geo.inside, 0.08 * mean_sky, camera.gap_level * mean_sky * np.exp(-np.maximum(r - 1, 0) / 0.5))
    units = np.where(sky, sky_units * vignetting, below + glow).astype(np.float32)
    h, w = camera.shape
    if units.shape != (h, w):  # PIL's bilinear resampling of a float image, about the pixel centres
        units = np.asarray(Image.fromarray(units, mode="F").resize((w, h), Image.BILINEAR), dtype=np.float64)
    electrons_s = units * camera.dark_sky_e_s
    full_well = camera.full_scale / camera.gain_adu_per_e
    if camera.exposure_s is None:
        yy, xx = np.ogrid[:h, :w]
        near_zenith = np.hypot(xx - camera.cx, yy - camera.cy) < 0.2 * camera.radius
        zenith = float(np.median(electrons_s[near_zenith])) if near_zenith.any() else float(np.median(electrons_s))
        exptime = float(min(SKY["max_exptime_s"], camera.auto_target_fraction * full_well / max(zenith, 1e-6)))
        exptime = float(np.round(exptime, 2)) if exptime < SKY["max_exptime_s"] else SKY["max_exptime_s"]
        exptime = max(exptime, 0.01)
    else:
        exptime = camera.exposure_s
    n_hot = rng.binomial(h * w, camera.hot_pixel_fraction)
    expected = electrons_s * exptime
    flat = expected.reshape(-1)
    flat[rng.integers(0, h * w, n_hot)] += rng.uniform(2.0, 60.0, n_hot) * exptime / max(camera.gain_adu_per_e, 1e-6)
    expected = np.clip(expected, 0, 1e9)
    electrons = expected + np.sqrt(expected) * rng.standard_normal((h, w)).astype(np.float32)
    few = expected < 50
    electrons[few] = rng.poisson(expected[few])
    if camera.bloom_px >= 1:  # saturated charge spills up and down its column
        from scipy.ndimage import maximum_filter1d

        saturated = electrons > full_well
        if saturated.any():
            length = int(camera.bloom_px)
            bled = maximum_filter1d(saturated.astype(np.uint8), size=2 * length + 1, axis=0).astype(bool)
            electrons = np.where(bled, np.maximum(electrons, full_well), electrons)
    adu = camera.pedestal_adu + camera.gain_adu_per_e * (electrons + rng.normal(0, camera.read_noise_e, (h, w)))
    adu = np.clip(adu, 0, camera.full_scale)
    if camera.format in ("fits", "png16"):
        return np.round(adu).astype(np.uint16), exptime
    from astrobench.tasks.allsky.data import linear_to_srgb

    encoded = linear_to_srgb(adu / camera.full_scale)
    if camera.format == "jpeg":
        encoded = encoded[..., None] * np.asarray(camera.colour)[None, None, :]
    return np.clip(np.round(encoded * 255), 0, 255).astype(np.uint8), exptime


def cloudy_fractions(tau: np.ndarray, sky: np.ndarray, subregions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(33,) sky pixels per sub-region and the fraction of them with tau > TAU_CLOUDY (0 where there is no sky)."""
    counted = sky & (subregions >= 0)
    n_sky = np.bincount(subregions[counted], minlength=N_SUBREGIONS)
    n_cloudy = np.bincount(subregions[counted & (tau > TAU_CLOUDY)], minlength=N_SUBREGIONS)
    return n_sky, n_cloudy / np.maximum(n_sky, 1)


def subregion_flags(tau: np.ndarray, sky: np.ndarray, subregions: np.ndarray) -> np.ndarray:
    """(33,) 0/1: flagged where more than FLAG_FRACTION of the sub-region's sky pixels have tau > TAU_CLOUDY."""
    return (cloudy_fractions(tau, sky, subregions)[1] > FLAG_FRACTION).astype(np.uint8)


def flag_margin(tau: np.ndarray, sky: np.ndarray, subregions: np.ndarray) -> float:
    """How close the frame's label is to the rule's threshold: the smallest |cloudy-pixel fraction - FLAG_FRACTION|
    over its sub-regions with sky (0.1 = every sub-region entirely clear or entirely cloudy ... 0.9 away)."""
    n_sky, fraction = cloudy_fractions(tau, sky, subregions)
    has = n_sky > 0
    return float(np.min(np.abs(fraction[has] - FLAG_FRACTION))) if has.any() else float("nan")


def rule_class_index(flags: np.ndarray) -> np.ndarray:
    """The labelling rule on (..., 33) 0/1 flags: class index 0 (clear) with none flagged, 2 (overcast) with all,
    1 (partly cloudy) otherwise."""
    n = np.sum(flags, axis=-1)
    return np.where(n == 0, 0, np.where(n == np.shape(flags)[-1], 2, 1))


def frame_label(flags: np.ndarray) -> str:
    return CLASSES[int(rule_class_index(flags))]


def simulate_frame(index: int, seed: int, camera: CameraModel | None = None, geo: FisheyeGeometry | None = None,
                   profile: np.ndarray | None = None):
    """Frame ``index`` of the simulation with ``seed`` through ``camera`` (default: the fixed camera): (counts,
    exptime_s, flags, truth dict); independent of which process renders it. ``geo`` and ``profile`` (the camera's
    sky grid and horizon) are computed once per camera by the caller when given."""
    camera = camera or fixed_camera()
    rng = np.random.default_rng([seed, 17, index])
    geo = geo or camera_sky_geometry(camera)
    cond = draw_conditions(rng, camera.sky.get("light_pollution_median", SKY["light_pollution_median"]))
    counts, exptime, tau, sky = render_frame(geo, cond, rng, camera, profile)
    flags = subregion_flags(tau, sky, geo.subregions)
    truth = {"cloud_cover_pixels": float(np.mean(tau[sky] > TAU_CLOUDY)),
             "flag_margin": flag_margin(tau, sky, geo.subregions), "moon_alt_deg": cond.moon_alt,
             "moon_illumination": moon_illuminated_fraction(cond.moon_phase_angle) if cond.moon_alt > 0 else 0.0,
             "sun_alt_deg": cond.sun_alt, "light_pollution": cond.light_pollution}
    return counts, exptime, flags, truth


SUFFIX = {"fits": "fits", "jpeg": "jpg", "png8": "png", "png16": "png"}


def cameras_for(n: int, seed: int, camera: str | dict = "random", frames_per_camera: int = 100,
                format: str | None = None) -> list[CameraModel]:
    """The cameras of a simulation: ``random`` draws one per ``frames_per_camera`` frames (domain randomisation),
    ``fixed`` is the one camera of version 2, a dict fixes CameraModel fields of one camera for every frame
    (e.g. ``{"shape": [1040, 1392], "format": "jpeg"}``). ``format`` overrides every camera's file format."""
    if camera == "random":
        cams = [draw_camera(np.random.default_rng([seed, 29, k])) for k in range(-(-n // frames_per_camera))]
    elif camera == "fixed":
        cams = [fixed_camera()]
    elif isinstance(camera, dict):
        unknown = set(camera) - set(CameraModel.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"camera: unknown field(s) {', '.join(sorted(unknown))}; fields: "
                              f"{', '.join(CameraModel.__dataclass_fields__)}")
        fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in camera.items()}
        if "shape" in fields and not {"cx", "cy", "radius"} & set(fields):
            cams = [fixed_camera(tuple(fields.pop("shape")), **fields)]
        else:
            cams = [replace(fixed_camera(), **fields)]
    else:
        raise ConfigError(f"camera must be random, fixed or a dict of camera fields, got {camera!r}")
    if format is not None:
        cams = [replace(c, format=format) for c in cams]
    return cams


def _write_chunk(args) -> list[dict]:
    folder, indices, seed, camera_index, camera = args
    geo = camera_sky_geometry(camera)
    profile = horizon_profile(np.random.default_rng([seed, 31, camera_index]))
    rows = []
    for i in indices:
        counts, exptime, flags, truth = simulate_frame(i, seed, camera, geo, profile)
        name = f"frames/{i:06d}.{SUFFIX[camera.format]}"
        _write_frame(Path(folder) / name, counts, exptime, camera)
        rows.append({"file": name, "label": frame_label(flags), "cloud_fraction": f"{flags.mean():.4f}",
                     "exptime_s": f"{exptime:.2f}", "subregion_flags": "".join(map(str, flags)),
                     "camera": f"cam{camera_index:03d}", "true_cx": f"{camera.cx:.2f}", "true_cy": f"{camera.cy:.2f}",
                     "true_radius": f"{camera.radius:.2f}", **{k: f"{v:.4f}" for k, v in truth.items()}})
    return rows


def _write_frame(path: Path, counts: np.ndarray, exptime: float, camera: CameraModel) -> None:
    if camera.format == "fits":
        from astropy.io import fits

        hdu = fits.PrimaryHDU(counts)  # uint16 -> BITPIX 16 with BZERO 32768, as the Lowell camera writes
        hdu.header["EXPTIME"] = (exptime, "exposure length (seconds)")
        hdu.header["CREATOR"] = f"astrobench allsky simulator {SIMULATOR_VERSION}"
        hdu.writeto(path, overwrite=True)
    else:
        from PIL import Image

        image = Image.fromarray(counts)  # uint16 grey (png16), uint8 grey (png8) or uint8 RGB (jpeg)
        if camera.format == "jpeg":
            image.save(path, quality=camera.jpeg_quality)
        else:
            image.save(path)


def simulate(out: str | Path, n: int = 1000, seed: int = 0, format: str | None = None, n_jobs: int = 2,
             camera: str | dict = "random", frames_per_camera: int = 100, progress: bool = True) -> Path:
    """Write ``n`` simulated frames and ``manifest.csv`` (file, label, cloud_fraction, exptime_s, subregion_flags,
    camera, the true circle and the truth columns) to the folder ``out``; returns the manifest's path.

    ``camera``: ``random`` (a new camera every ``frames_per_camera`` frames), ``fixed`` or a dict of camera fields
    (cameras_for). ``format`` (fits, jpeg, png8, png16; png = png16) overrides the cameras' own."""
    from rich.progress import track

    if format == "png":
        format = "png16"
    if format is not None and format not in SUFFIX:
        raise ConfigError(f"allsky writes fits, jpeg, png8 or png16 (png) frames, not {format!r}")
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if not isinstance(frames_per_camera, int) or frames_per_camera < 1:
        raise ConfigError(f"frames_per_camera must be a positive integer, got {frames_per_camera!r}")
    if isinstance(camera, str) and camera.strip().startswith("{"):
        from astrobench.tasks.allsky.geometry import dict_from_text

        camera = dict_from_text(camera.strip(), "camera")
    cams = cameras_for(n, seed, camera, frames_per_camera, format)
    out = Path(out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    per = frames_per_camera if len(cams) > 1 else n
    chunks = []
    for k, cam in enumerate(cams):
        first, last = k * per, min((k + 1) * per, n)
        chunks += [(str(out), list(range(a, min(a + 25, last))), seed, k, cam) for a in range(first, last, 25)]
    rows: list[dict] = []
    with executor(n_jobs, n_chunks=len(chunks)) as pool:
        for part in track(pool.map(_write_chunk, chunks), total=len(chunks), description="allsky: rendering frames",
                          disable=not progress, transient=True):
            rows.extend(part)
    manifest = out / "manifest.csv"
    with atomic_path(manifest) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    with atomic_path(out / "cameras.json") as tmp:
        import json

        tmp.write_text(json.dumps({f"cam{k:03d}": c.to_dict() for k, c in enumerate(cams)}, indent=1))
    return manifest
