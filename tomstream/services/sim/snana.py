"""Reading an ELAsTiCC2 SNANA FITS set: ``*_HEAD.FITS.gz`` / ``*_PHOT.FITS.gz`` pairs.

A HEAD file has one row per object (``SNID``, position, host galaxies, the simulation's truth
``SIM_*`` and ``PTROBS_MIN``/``PTROBS_MAX``, 1-based rows of the object's epochs in the PHOT
file). A PHOT file has one row per epoch, with a ``MJD = -777`` separator row after each
object. Everything is read column-wise with numpy; the ELAsTiCC2 rules applied here are in
:mod:`tomstream.services.sim.alerts`.
"""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from tomstream.services.sim.alerts import (
    MAX_EPOCHS_PER_OBJECT,
    SIM_VERSION,
    detected,
    fluxcal_to_njy,
    is_ddf,
)
from tomstream.services.sim.storage import (
    HOSTGAL_FIELDS,
    OBJECT_FLOAT_COLUMNS,
    PEAKMAG_COLUMNS,
    Epochs,
    SimBatch,
    SimError,
)

HEAD_SUFFIXES: Final = ("_HEAD.FITS.gz", "_HEAD.FITS")
SEPARATOR_MJD: Final = -777.0


def _snana_band(band: str) -> str:
    """SNANA column names spell the bands u g r i z Y."""
    return "Y" if band == "y" else band


def _snana_hostgal(field: str) -> str:
    """The SNANA spelling of a diaObject host-galaxy field (``zphot`` → ``PHOTOZ``, …)."""
    renamed = {
        "zspec": "SPECZ",
        "zspec_err": "SPECZ_ERR",
        "zphot": "PHOTOZ",
        "zphot_err": "PHOTOZ_ERR",
    }
    if field in renamed:
        return renamed[field]
    kind, _, band = field.rpartition("_")
    if kind in ("mag", "magerr"):
        return f"{kind.upper()}_{_snana_band(band)}"
    return field.upper()


OBJECT_SOURCE_COLUMNS: Final[dict[str, str]] = {
    "mwebv": "MWEBV",
    "mwebv_err": "MWEBV_ERR",
    "z_final": "REDSHIFT_FINAL",
    "z_final_err": "REDSHIFT_FINAL_ERR",
    "z_helio": "REDSHIFT_HELIO",
    "z_helio_err": "REDSHIFT_HELIO_ERR",
    **{
        f"hostgal{host}_{name}": f"HOSTGAL{host}_{_snana_hostgal(name)}"
        for host in ("", "2")
        for name in HOSTGAL_FIELDS
    },
}
"""``sim.diaobject`` float column → HEAD column (as the DESC TOM's loader maps them)."""
assert tuple(OBJECT_SOURCE_COLUMNS) == OBJECT_FLOAT_COLUMNS

TRUTH_SOURCE_COLUMNS: Final[dict[str, str]] = {
    "gentype": "SIM_TYPE_INDEX",
    "sim_model_name": "SIM_MODEL_NAME",
    "sim_template_index": "SIM_TEMPLATE_INDEX",
    "zcmb": "SIM_REDSHIFT_CMB",
    "zhelio": "SIM_REDSHIFT_HELIO",
    "peakmjd": "SIM_PEAKMJD",
    "mjd_detect_first": "MJD_DETECT_FIRST",
    "mjd_detect_last": "MJD_DETECT_LAST",
    **{column: f"SIM_PEAKMAG_{_snana_band(column[-1])}" for column in PEAKMAG_COLUMNS},
}
"""``sim.object_truth`` column → HEAD column. These are the values of SNANA's DUMP file (the
DESC TOM's truth table), which the HEAD file repeats, so the DUMP file is not needed."""


@dataclass(frozen=True)
class FilePair:
    head: Path
    phot: Path


def find_pairs(root: Path) -> list[FilePair]:
    """Every HEAD/PHOT pair under ``root`` (searched recursively), in name order."""
    pairs = []
    for head in sorted(p for p in root.rglob("*_HEAD.FITS*") if p.name.endswith(HEAD_SUFFIXES)):
        phot = head.with_name(head.name.replace("_HEAD.FITS", "_PHOT.FITS"))
        if not phot.is_file():
            raise SimError(f"{head} has no PHOT file {phot.name}")
        pairs.append(FilePair(head, phot))
    return pairs


@contextmanager
def snana_set(path: Path) -> Iterator[list[FilePair]]:
    """The file pairs of a directory, or of a tar archive (unpacked to a temporary folder)."""
    if path.is_dir():
        pairs = find_pairs(path)
        _require_pairs(pairs, path)
        yield pairs
        return
    if not path.is_file():
        raise SimError(f"{path}: no such file or directory")
    if not tarfile.is_tarfile(path):
        raise SimError(f"{path} is neither a directory nor a tar archive of SNANA FITS files")
    with tempfile.TemporaryDirectory(prefix="tomstream-snana-") as tmp, tarfile.open(path) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and ".FITS" in m.name]
        tar.extractall(tmp, members=members, filter="data")
        pairs = find_pairs(Path(tmp))
        _require_pairs(pairs, path)
        yield pairs


def _require_pairs(pairs: list[FilePair], path: Path) -> None:
    if not pairs:
        raise SimError(f"no *_HEAD.FITS.gz files found in {path}")


def _column(table: fits.FITS_rec, name: str, file: Path) -> npt.NDArray[np.generic]:
    try:
        return np.asarray(table[name])
    except KeyError:
        raise SimError(f"{file.name} has no column {name}") from None


def read_pair(pair: FilePair) -> SimBatch:
    """One HEAD/PHOT pair as a batch, with the ELAsTiCC2 loader's rules."""
    head = fits.getdata(pair.head, 1)
    phot = fits.getdata(pair.phot, 1)

    def col(name: str) -> npt.NDArray[np.generic]:
        return _column(head, name, pair.head)

    def phot_col(name: str) -> npt.NDArray[np.generic]:
        return _column(phot, name, pair.phot)

    # SNANA writes SNID as a string.
    object_ids = np.char.strip(col("SNID").astype(str)).astype(np.int64)
    first_row = col("PTROBS_MIN").astype(np.int64) - 1  # 1-based in the file
    n_epochs = col("PTROBS_MAX").astype(np.int64) - first_row
    if len(object_ids) and (n_epochs.min() < 1 or first_row.min() < 0):
        raise SimError(f"{pair.head.name}: PTROBS_MIN/PTROBS_MAX out of order")
    if len(object_ids) and n_epochs.max() > MAX_EPOCHS_PER_OBJECT:
        raise SimError(f"{pair.head.name}: an object has more than {MAX_EPOCHS_PER_OBJECT} epochs")

    # Row of every epoch in PHOT and its index within its object, without a loop over objects.
    object_index = np.repeat(np.arange(len(object_ids), dtype=np.int64), n_epochs)
    epoch_index = np.arange(len(object_index), dtype=np.int64) - np.repeat(
        np.cumsum(n_epochs) - n_epochs, n_epochs
    )
    rows = first_row[object_index] + epoch_index
    if len(rows) and rows.max() >= len(phot):
        raise SimError(f"{pair.head.name}: PTROBS_MAX beyond the end of {pair.phot.name}")
    mjd = phot_col("MJD").astype(np.float64)[rows]
    # Separator rows lie between objects' ranges; one inside a range (never seen in ELAsTiCC2)
    # is skipped without renumbering the epochs after it.
    real = mjd != SEPARATOR_MJD
    rows = rows[real]

    epochs = Epochs(
        object_index=object_index[real],
        epoch_index=epoch_index[real],
        mjd=mjd[real],
        band=np.char.strip(phot_col("BAND").astype("S"))[rows],
        flux=fluxcal_to_njy(phot_col("FLUXCAL"))[rows],
        flux_err=fluxcal_to_njy(phot_col("FLUXCALERR"))[rows],
        detected=detected(phot_col("PHOTFLAG"))[rows],
    )
    objects = {
        "diaobject_id": object_ids,
        "isddf": is_ddf(n_epochs),
        "simversion": np.full(len(object_ids), SIM_VERSION),
        "ra": col("RA").astype(np.float64),
        "decl": col("DEC").astype(np.float64),
        # Optional, as in the DESC TOM's loader: galactic models have no photo-z quantiles.
        **{
            column: col(source) if source in head.columns.names else None
            for column, source in OBJECT_SOURCE_COLUMNS.items()
        },
    }
    truth = {"diaobject_id": object_ids} | {
        column: col(source) for column, source in TRUTH_SOURCE_COLUMNS.items()
    }
    truth["sim_model_name"] = np.char.strip(truth["sim_model_name"].astype("S"))
    return SimBatch(objects=objects, truth=truth, epochs=epochs)
