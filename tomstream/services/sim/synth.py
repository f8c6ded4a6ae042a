"""``tomstream sim synth``: a synthetic, ELAsTiCC-shaped survey of any size.

It fills the same ``sim`` tables as an SNANA load, so ``tomstream sim send`` streams it the
same way. The survey is simple but shaped like ELAsTiCC2:

- **Classes** (truth ``gentype`` from the ELAsTiCC2 ``elasticc_origmap``): SN Ia, SN II and
  SN Ib/c (rise-and-fall light curves, Bazin et al. 2009, with time dilation), kilonovae (days),
  M-dwarf flares (minutes to hours, no host) and AGN (a damped random walk around the
  reference flux). Extragalactic objects get a redshift, a distance modulus and a host galaxy
  (photo-z with quantiles, sometimes a spec-z, magnitudes, offset); all get Milky-Way dust.
- **Cadence:** WFD objects are visited on about half of the nights, twice a night (≈30 min
  apart) in neighbouring bands of ``ugrizY``; DDF objects every night, ten times, through all
  bands; clouds take 15 % of each field's nights. Clouds are patchy rather than the whole sky:
  every night has some detections, so ``sim send --added-days 1`` (which counts from the last
  alert sent) moves on night after night. Visits fall between MJD x.00 and x.38 (the Chilean
  night), so a simulated day ends at x.5.
- **Photometry:** the error comes from a per-visit 5-sigma depth (scattered) plus the source's own
  Poisson noise; the flux is the model plus that noise; an epoch with S/N > 5 is a detection
  (PHOTFLAG 4096: a diaSource and an alert). Fluxes are nJy, as in the alerts.

Everything is vectorised with numpy over chunks of objects; a seed gives the same survey every
time. Object ids start at 10^12 + seed x 10^8, far above any SNANA SNID, so a synthetic survey
never collides with a loaded one (and running the same seed twice adds nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from tomstream import avro
from tomstream.services.sim.storage import (
    HOSTGAL_FIELDS,
    PEAKMAG_COLUMNS,
    Columns,
    Epochs,
    SimBatch,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SYNTH_ID_BASE: Final = 10**12
IDS_PER_SEED: Final = 10**8
MAX_SEED: Final = 9_999
SIM_VERSION: Final = "tomstream-synth-1"
CHUNK_OBJECT_NIGHTS: Final = 1_000_000
"""Objects per chunk x nights: bounds the memory of one chunk (one transaction when loading)."""

BANDS: Final = np.array([b"u", b"g", b"r", b"i", b"z", b"Y"])
SINGLE_VISIT_DEPTH: Final = np.array([23.9, 25.0, 24.7, 24.0, 23.3, 22.1])
"""5-sigma point-source depth of one visit per band (LSST baseline), mag."""
DEPTH_SCATTER_MAG: Final = 0.25
EXTINCTION_PER_EBV: Final = np.array([4.75, 3.66, 2.70, 2.06, 1.59, 1.31])
"""A_band / E(B-V) for the Milky-Way dust."""
SOURCE_NOISE_NJY: Final = 2.0
"""Poisson noise of the source: its variance grows by this many nJy per nJy of flux."""
DETECTION_SNR: Final = 5.0
CLOUDY_NIGHTS: Final = 0.15
"""Fraction of a field's nights lost to clouds."""
NIGHT_LENGTH_DAYS: Final = 0.38
VISIT_SPACING_DAYS: Final = 0.021

WFD_VISIT_PROBABILITY: Final = 0.55
WFD_VISITS_PER_NIGHT: Final = 2
WFD_FIRST_BAND_WEIGHTS: Final = np.array([0.08, 0.22, 0.25, 0.25, 0.20])
"""WFD pairs a band with the next: ug, gr, ri, iz, zY."""
DDF_VISIT_PROBABILITY: Final = 1.0
DDF_VISITS_PER_NIGHT: Final = 10

GENTYPE_SNIA: Final = 10  # SNIa-SALT2
GENTYPE_SNIB: Final = 20  # SNIb-Templates
GENTYPE_SNII: Final = 31  # SNII-Templates
GENTYPE_KN: Final = 50  # KN_K17
GENTYPE_AGN: Final = 60  # AGN
GENTYPE_MDWARF_FLARE: Final = 82  # Mdwarf-flare

PHOTOZ_QUANTILES: Final = np.array(
    [-2.5, -1.2816, -0.8416, -0.5244, -0.2533, 0.0, 0.2533, 0.5244, 0.8416, 1.2816, 2.5]
)
"""Standard-normal quantiles of the host photo-z PDF at 0, 10, …, 100 % (ends clipped)."""
HOST_COLORS: Final = np.array([1.8, 0.8, 0.0, -0.4, -0.7, -0.9])
"""Host-galaxy magnitude in each band minus its r magnitude."""
SPEC_Z_FRACTION: Final = 0.15

HUBBLE_DISTANCE_MPC: Final = 299_792.458 / 70.0
OMEGA_MATTER: Final = 0.3

Kind = Literal["explosive", "flare", "stochastic"]


@dataclass(frozen=True)
class LightCurveModel:
    """One class of the synthetic survey.

    ``magnitude`` is the absolute peak magnitude (mean, sigma) of explosive classes and the
    apparent peak (flares) or mean (AGN) magnitude range (low, high) of the others;
    ``redshift`` None means a Milky-Way object without host galaxy. ``rise_days`` /
    ``fall_days`` (rest frame) shape explosive and flare light curves; ``drw_days`` /
    ``drw_mag`` are the damped random walk's timescale and amplitude (SF∞) of AGN.
    ``colors`` are the peak magnitudes in ugrizY minus r.
    """

    name: str
    gentype: int
    weight: float
    kind: Kind
    magnitude: tuple[float, float]
    redshift: tuple[float, float] | None
    colors: tuple[float, float, float, float, float, float]
    rise_days: tuple[float, float] = (0.0, 0.0)
    fall_days: tuple[float, float] = (0.0, 0.0)
    drw_days: tuple[float, float] = (0.0, 0.0)
    drw_mag: tuple[float, float] = (0.0, 0.0)


MODELS: Final = (
    LightCurveModel(
        "synth SN Ia", GENTYPE_SNIA, 0.30, "explosive", (-19.3, 0.15), (0.05, 1.1),
        (1.0, 0.15, 0.0, 0.15, 0.35, 0.55), rise_days=(2.5, 4.5), fall_days=(20, 30),
    ),
    LightCurveModel(
        "synth SN II", GENTYPE_SNII, 0.22, "explosive", (-16.9, 0.9), (0.02, 0.5),
        (0.5, 0.05, 0.0, 0.0, 0.1, 0.2), rise_days=(3, 8), fall_days=(50, 110),
    ),
    LightCurveModel(
        "synth SN Ib/c", GENTYPE_SNIB, 0.10, "explosive", (-17.5, 0.6), (0.02, 0.5),
        (1.3, 0.45, 0.0, 0.0, 0.15, 0.3), rise_days=(4, 8), fall_days=(15, 25),
    ),
    LightCurveModel(
        "synth KN", GENTYPE_KN, 0.03, "explosive", (-16.0, 0.5), (0.01, 0.06),
        (2.5, 1.4, 0.7, 0.3, 0.1, 0.0), rise_days=(0.3, 0.8), fall_days=(1.5, 4.0),
    ),
    LightCurveModel(
        "synth M-dwarf flare", GENTYPE_MDWARF_FLARE, 0.15, "flare", (17.5, 22.5), None,
        (-1.2, -0.6, 0.0, 0.6, 0.9, 1.1), rise_days=(0.003, 0.01), fall_days=(0.02, 0.12),
    ),
    LightCurveModel(
        "synth AGN", GENTYPE_AGN, 0.20, "stochastic", (20.0, 23.0), (0.1, 2.5),
        (0.3, 0.1, 0.0, -0.05, -0.1, -0.15), drw_days=(50, 300), drw_mag=(0.1, 0.3),
    ),
)  # fmt: skip


class SynthSpec(BaseModel):
    """What to synthesise; the same spec always gives the same survey."""

    model_config = ConfigDict(frozen=True)

    objects: int = Field(gt=0, le=IDS_PER_SEED)
    seed: int = Field(ge=0, le=MAX_SEED)
    start_mjd: float = Field(ge=0)
    days: int = Field(gt=0, le=3650)
    ddf_fraction: float = Field(ge=0, le=1)

    @property
    def chunk_objects(self) -> int:
        return max(1, CHUNK_OBJECT_NIGHTS // self.days)


def generate(spec: SynthSpec) -> Iterator[SimBatch]:
    """The survey, chunk by chunk (each a :class:`SimBatch` of up to ``chunk_objects``)."""
    for number, first in enumerate(range(0, spec.objects, spec.chunk_objects)):
        rng = np.random.default_rng([spec.seed, number])
        count = min(spec.chunk_objects, spec.objects - first)
        ids = SYNTH_ID_BASE + spec.seed * IDS_PER_SEED + first + np.arange(count, dtype=np.int64)
        yield _chunk(rng, spec, ids)


def _chunk(rng: np.random.Generator, spec: SynthSpec, ids: IntArray) -> SimBatch:
    n = len(ids)
    weights = np.array([model.weight for model in MODELS])
    model_index = rng.choice(len(MODELS), size=n, p=weights / weights.sum())
    ddf = rng.random(n) < spec.ddf_fraction
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, np.sin(np.radians(5.0)), n)))
    mwebv = np.minimum(0.005 + rng.exponential(0.04, n), 0.5)

    obj, epoch_index, mjd, band = _cadence(rng, spec.days, spec.start_mjd, ddf)
    kinds = np.array([model.kind for model in MODELS])[model_index]
    galactic = np.array([model.redshift is None for model in MODELS])[model_index]
    z = _redshifts(rng, model_index, galactic)
    rise, fall = _uniform_per_model(rng, model_index, "rise_days", "fall_days")
    base_mag, peak_mjd = _peaks(rng, spec, model_index, kinds, z, fall, obj, mjd)
    colors = np.array([model.colors for model in MODELS])[model_index]
    peak_mags = base_mag[:, None] + colors + EXTINCTION_PER_EBV[None, :] * mwebv[:, None]
    band_flux = 10 ** (-0.4 * (peak_mags - avro.ALERT_FLUX_ZERO_POINT))  # nJy, per object and band

    true_flux = np.zeros(len(mjd))
    shaped = kinds[obj] != "stochastic"
    stretch = 1.0 + z  # time dilation
    true_flux[shaped] = _bazin(
        mjd[shaped] - peak_mjd[obj[shaped]],
        (rise * stretch)[obj[shaped]],
        (fall * stretch)[obj[shaped]],
    )
    walk = ~shaped
    drw_days, drw_mag = _uniform_per_model(rng, model_index, "drw_days", "drw_mag")
    true_flux[walk] = 10 ** (-0.4 * _damped_random_walk(rng, obj, walk, mjd, drw_days, drw_mag))
    true_flux[walk] -= 1.0  # difference imaging: the reference holds the mean flux
    true_flux *= band_flux[obj, band]

    depth = SINGLE_VISIT_DEPTH[band] + rng.normal(0.0, DEPTH_SCATTER_MAG, len(mjd))
    sky_sigma = 10 ** (-0.4 * (depth - avro.ALERT_FLUX_ZERO_POINT)) / 5.0
    flux_err = np.sqrt(sky_sigma**2 + SOURCE_NOISE_NJY * np.abs(true_flux))
    flux = true_flux + flux_err * rng.standard_normal(len(mjd))
    detected = flux / flux_err > DETECTION_SNR

    epochs = Epochs(
        object_index=obj,
        epoch_index=epoch_index,
        mjd=mjd,
        band=BANDS[band],
        flux=flux,
        flux_err=flux_err,
        detected=detected,
    )
    first_detection, last_detection = _detection_span(n, obj, mjd, detected)
    objects: dict[str, npt.NDArray[np.generic] | None] = {
        "diaobject_id": ids,
        "isddf": ddf,
        "simversion": np.full(n, SIM_VERSION),
        "ra": ra,
        "decl": dec,
        "mwebv": mwebv,
        "mwebv_err": 0.05 * mwebv,
        **_host_galaxies(rng, z, ~galactic, ra, dec),
    }
    truth: Columns = {
        "diaobject_id": ids,
        "gentype": np.array([model.gentype for model in MODELS])[model_index],
        "sim_model_name": np.array([model.name for model in MODELS])[model_index],
        "sim_template_index": model_index,
        "zcmb": z,
        "zhelio": z,
        "peakmjd": peak_mjd,
        "mjd_detect_first": first_detection,
        "mjd_detect_last": last_detection,
        **dict(zip(PEAKMAG_COLUMNS, peak_mags.T, strict=True)),
    }
    return SimBatch(objects=objects, truth=truth, epochs=epochs)


def _cadence(
    rng: np.random.Generator, nights: int, start_mjd: float, ddf: BoolArray
) -> tuple[IntArray, IntArray, FloatArray, IntArray]:
    """Visits of each object: (object, epoch index, MJD, band index), by object then time."""
    probability = np.where(ddf, DDF_VISIT_PROBABILITY, WFD_VISIT_PROBABILITY)
    probability *= 1.0 - CLOUDY_NIGHTS
    visited = rng.random((len(ddf), nights)) < probability[:, None]
    night_object, night = np.nonzero(visited)  # row-major: by object, then night
    visits = np.where(ddf[night_object], DDF_VISITS_PER_NIGHT, WFD_VISITS_PER_NIGHT)
    first_visit = rng.uniform(0.0, NIGHT_LENGTH_DAYS - (visits - 1) * VISIT_SPACING_DAYS)
    first_band = np.where(
        ddf[night_object],
        rng.integers(0, len(BANDS), len(night)),
        rng.choice(len(WFD_FIRST_BAND_WEIGHTS), len(night), p=WFD_FIRST_BAND_WEIGHTS),
    )
    of_night = np.repeat(np.arange(len(night)), visits)
    k = _index_within_groups(visits)
    mjd = start_mjd + night[of_night] + first_visit[of_night] + k * VISIT_SPACING_DAYS
    band = (first_band[of_night] + k) % len(BANDS)
    obj = night_object[of_night]
    epoch_index = _index_within_groups(np.bincount(obj, minlength=len(ddf)))
    return obj, epoch_index, mjd, band


def _index_within_groups(sizes: IntArray) -> IntArray:
    """0, 1, …, size-1 for each of consecutive groups of the given sizes."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.arange(sizes.sum(), dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def _redshifts(rng: np.random.Generator, model_index: IntArray, galactic: BoolArray) -> FloatArray:
    bounds = np.array([model.redshift or (0.0, 0.0) for model in MODELS])[model_index]
    # More objects far away than near (volume), but not the full z² of a volume-limited sample.
    z = bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * np.sqrt(rng.random(len(model_index)))
    return np.where(galactic, 0.0, z)


def _peaks(
    rng: np.random.Generator,
    spec: SynthSpec,
    model_index: IntArray,
    kinds: npt.NDArray[np.str_],
    z: FloatArray,
    fall: FloatArray,
    obj: IntArray,
    mjd: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Peak r magnitude (AGN: mean) and peak time of every object (AGN: -9, none)."""
    n = len(model_index)
    magnitude = np.array([model.magnitude for model in MODELS])[model_index]
    explosive = kinds == "explosive"
    distance_modulus = _distance_modulus(np.where(explosive, z, 0.1))
    base_mag = np.where(
        explosive,
        magnitude[:, 0] + magnitude[:, 1] * rng.standard_normal(n) + distance_modulus,
        rng.uniform(magnitude[:, 0], magnitude[:, 1]),
    )
    # Explosions peak throughout the survey (and a little before and after it), so their
    # detections spread over the days.
    peak = rng.uniform(spec.start_mjd - 20.0, spec.start_mjd + spec.days + 5.0, n)
    # A flare lasts hours: one that no visit caught would be no alert at all, so it is put
    # just before a random visit of its star.
    visits = np.bincount(obj, minlength=n)
    first_visit = np.cumsum(visits) - visits
    caught = first_visit + (rng.random(n) * visits).astype(np.int64)
    flare = (kinds == "flare") & (visits > 0)
    peak[flare] = mjd[caught[flare]] - rng.uniform(0.0, 0.3, flare.sum()) * fall[flare]
    peak[kinds == "stochastic"] = -9.0
    return base_mag, peak


def _distance_modulus(z: FloatArray) -> FloatArray:
    """Flat ΛCDM (H0 = 70, Ωm = 0.3): the comoving distance integral on a grid, interpolated."""
    grid = np.linspace(0.0, max(float(z.max(initial=0.0)), 0.1) * 1.01, 2001)
    inverse_e = 1.0 / np.sqrt(OMEGA_MATTER * (1.0 + grid) ** 3 + 1.0 - OMEGA_MATTER)
    steps = np.diff(grid) * (inverse_e[1:] + inverse_e[:-1]) / 2.0
    comoving = HUBBLE_DISTANCE_MPC * np.concatenate([[0.0], np.cumsum(steps)])
    luminosity_distance = (1.0 + z) * np.interp(z, grid, comoving)
    return 5.0 * np.log10(luminosity_distance) + 25.0


def _uniform_per_model(
    rng: np.random.Generator, model_index: IntArray, *fields: str
) -> list[FloatArray]:
    """One uniform draw per object from its model's (low, high) range of each field."""
    draws = []
    for name in fields:
        bounds = np.array([getattr(model, name) for model in MODELS])[model_index]
        draws.append(rng.uniform(bounds[:, 0], bounds[:, 1]))
    return draws


def _bazin(dt: FloatArray, rise: FloatArray, fall: FloatArray) -> FloatArray:
    """The rise-and-fall shape ``exp(-t/fall) / (1 + exp(-t/rise))``, 1 at its maximum.

    ``dt`` is the time from the maximum, which lies ``rise * ln(fall/rise - 1)`` after the
    shape's own origin (fall > rise). Computed in logs so that early times do not overflow.
    """
    to_peak = rise * np.log(fall / rise - 1.0)
    t = dt + to_peak
    log_shape = -t / fall - np.logaddexp(0.0, -t / rise)
    log_peak = -to_peak / fall - np.logaddexp(0.0, -to_peak / rise)
    return np.exp(log_shape - log_peak)


def _damped_random_walk(
    rng: np.random.Generator,
    obj: IntArray,
    selected: BoolArray,
    mjd: FloatArray,
    timescale: FloatArray,
    amplitude: FloatArray,
) -> FloatArray:
    """Magnitude offsets of the selected epochs: a damped random walk per object.

    Stationary with variance amplitude²/2; epochs are in time order within each object. The
    recurrence runs over epoch positions, vectorised over all the walking objects at once.
    """
    walkers, row = np.unique(obj[selected], return_inverse=True)
    column = _index_within_groups(np.bincount(row))
    times = np.full((len(walkers), column.max(initial=-1) + 1), np.nan)
    times[row, column] = mjd[selected]
    sigma = amplitude[walkers] / np.sqrt(2.0)
    noise = rng.standard_normal(times.shape)
    walk = np.empty_like(times)  # past an object's last epoch: NaN, never read
    walk[:, 0] = sigma * noise[:, 0]
    for j in range(1, times.shape[1]):
        decay = np.exp(-(times[:, j] - times[:, j - 1]) / timescale[walkers])
        walk[:, j] = walk[:, j - 1] * decay + sigma * np.sqrt(1.0 - decay**2) * noise[:, j]
    return walk[row, column]


def _detection_span(
    n: int, obj: IntArray, mjd: FloatArray, detected: BoolArray
) -> tuple[FloatArray, FloatArray]:
    """First and last detection of every object (-9 without one); epochs are in time order."""
    first, last = np.full(n, -9.0), np.full(n, -9.0)
    det_obj, det_mjd = obj[detected], mjd[detected]
    objects, first_at = np.unique(det_obj, return_index=True)
    first[objects] = det_mjd[first_at]
    objects, last_from_end = np.unique(det_obj[::-1], return_index=True)
    last[objects] = det_mjd[::-1][last_from_end]
    return first, last


def _host_galaxies(
    rng: np.random.Generator, z: FloatArray, hosted: BoolArray, ra: FloatArray, dec: FloatArray
) -> dict[str, FloatArray]:
    """The diaObject's redshift and host-galaxy columns, SNANA sentinels where there is none."""
    n = len(z)
    zphot_err = 0.03 * (1.0 + z) * rng.uniform(0.5, 2.0, n)
    zphot = np.abs(z + zphot_err * rng.standard_normal(n))
    spec = rng.random(n) < SPEC_Z_FRACTION
    mag_r = 19.0 + 5.0 * np.log10(np.maximum(z, 0.01) / 0.1) + rng.normal(0.0, 0.7, n)
    mags = mag_r[:, None] + HOST_COLORS[None, :]
    separation = rng.exponential(0.7, n)  # arcsec
    angle = rng.uniform(0.0, 2 * np.pi, n)
    host: dict[str, FloatArray] = {
        "ellipticity": rng.uniform(0.0, 0.7, n),
        "sqradius": np.exp(rng.normal(1.0, 0.7, n)),
        "zspec": np.where(spec, z, -9.0),
        "zspec_err": np.where(spec, 0.0005, -9.0),
        "zphot": zphot,
        "zphot_err": zphot_err,
        **{
            f"zphot_q{q:03d}": np.maximum(zphot + zphot_err * quantile, 0.0)
            for q, quantile in zip(range(0, 101, 10), PHOTOZ_QUANTILES, strict=True)
        },
        **{f"mag_{b}": mags[:, i] for i, b in enumerate("ugrizy")},
        **{
            f"magerr_{b}": 0.005 + 0.01 * 10 ** (0.4 * (mags[:, i] - 22.0))
            for i, b in enumerate("ugrizy")
        },
        "ra": ra - separation * np.cos(angle) / 3600.0 / np.cos(np.radians(dec)),
        "dec": dec - separation * np.sin(angle) / 3600.0,
        "snsep": separation,
    }
    columns = {
        f"hostgal_{name}": np.where(hosted, host[name], _no_host(name)) for name in HOSTGAL_FIELDS
    }
    columns |= {f"hostgal2_{name}": np.full(n, _no_host(name)) for name in HOSTGAL_FIELDS}
    z_final = np.where(spec, z, zphot)
    z_final_err = np.where(spec, 0.0005, zphot_err)
    for name, value in (("z_final", z_final), ("z_final_err", z_final_err)):
        columns[name] = np.where(hosted, value, -9.0)
    columns["z_helio"], columns["z_helio_err"] = columns["z_final"], columns["z_final_err"]
    return columns


def _no_host(field: str) -> float:
    """SNANA's value for a host-galaxy field when there is no host."""
    if field.startswith(("mag", "magerr")):
        return 999.0
    if field in ("ra", "dec"):
        return -999.0
    if field in ("ellipticity", "sqradius"):
        return -9999.0
    return -9.0
