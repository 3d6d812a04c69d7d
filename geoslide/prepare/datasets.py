"""Registry of the real public data sets and the data directory they are read from.

``load("kashmir")`` / ``load("ecuador")`` return ready geoslide Datasets (see
:func:`geoslide.stack` for the contract).

Data directory (:func:`data_dir`), first that applies:

1. the environment variable ``GEOSLIDE_DATA_DIR``;
2. ``../shared/data`` beside the checkout (this repository's development set-up), when it
   exists;
3. a per-user cache (``pooch.os_cache("geoslide")``), where missing files are fetched from
   their public source and checked against their sha256 checksum.

Files are looked up as ``<data dir>/<data set>/<file>``. A file absent from a data directory is
fetched into it (then verified); a file with no public URL (``lsl_points.gpkg``, derived from an
R data set) raises :class:`MissingFileError` with instructions to build it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import xarray as xr

from geoslide.errors import ChecksumError, MissingFileError

ENV_VAR = "GEOSLIDE_DATA_DIR"

_KASHMIR_URL = "https://raw.githubusercontent.com/pg971/SEPwC_landslides_python/main/data/"
_ECUADOR_TA_URL = "https://raw.githubusercontent.com/Nowosad/spDataLarge/master/inst/raster/ta.tif"

#: downloader passed to ``pooch.retrieve`` (None: pooch's HTTP downloader); tests replace it
DOWNLOADER: Callable[..., Any] | None = None


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: its name, public URL (None when not downloadable) and sha256."""

    name: str
    url: str | None
    sha256: str
    how_to_get: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """A registered data set: files, source, licence and the function building its Dataset."""

    name: str
    description: str
    source: str
    licence: str
    files: tuple[RemoteFile, ...]
    build: Callable[[Path, Any], xr.Dataset] = field(repr=False)

    def file(self, name: str) -> RemoteFile:
        for f in self.files:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no file {name!r}; files: {[f.name for f in self.files]}")


def _default_data_dir() -> Path:
    # <checkout>/geoslide/prepare/datasets.py -> <checkout>/../shared/data
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def cache_dir() -> Path:
    """Folder where fetched files go when no data directory is configured."""
    import pooch

    return Path(pooch.os_cache("geoslide"))


def data_dir() -> Path:
    """The data directory: ``$GEOSLIDE_DATA_DIR``, else ``../shared/data`` beside the checkout
    when it exists, else the download cache (:func:`cache_dir`)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    local = _default_data_dir()
    if local.is_dir():
        return local
    return cache_dir()


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_file(dataset: str, name: str, *, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of ``<data dir>/<dataset>/<name>``, fetched from its public URL and verified
    against its sha256 when absent. Raises :class:`MissingFileError` when it cannot be had,
    :class:`ChecksumError` when a download does not match its checksum."""
    info = get(dataset)
    entry = info.file(name)
    root = Path(data_dir) if data_dir is not None else _resolve_data_dir()
    path = root / dataset / name
    if path.exists():
        return path
    if entry.url is None:
        raise MissingFileError(
            f"{dataset}/{name} not found in the data directory {str(root)!r} and it has no "
            f"public download; {entry.how_to_get} Then place it at {str(path)!r} (or point "
            f"{ENV_VAR} at a folder holding {dataset}/{name})"
        )
    import pooch

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        got = pooch.retrieve(entry.url, known_hash=f"sha256:{entry.sha256}", fname=name,
                             path=path.parent, downloader=DOWNLOADER, progressbar=False)
    except ValueError as exc:  # pooch: hash mismatch
        raise ChecksumError(
            f"{dataset}/{name} downloaded from {entry.url} does not match its sha256 "
            f"{entry.sha256} ({exc}); the source changed or the download is corrupt; "
            f"fetch it by hand and place it at {str(path)!r}"
        ) from exc
    except Exception as exc:  # network errors of any kind
        raise MissingFileError(
            f"{dataset}/{name} not found in the data directory {str(root)!r} and fetching it "
            f"from {entry.url} failed ({type(exc).__name__}: {exc}); download it by hand to "
            f"{str(path)!r} or set {ENV_VAR} to a folder holding {dataset}/{name}"
        ) from exc
    return Path(got)


def fetch(dataset: str, *, data_dir: str | os.PathLike | None = None) -> Path:
    """Make every file of ``dataset`` available; returns its folder."""
    info = get(dataset)
    paths = [fetch_file(dataset, f.name, data_dir=data_dir) for f in info.files]
    return paths[0].parent


def verify(dataset: str, *, data_dir: str | os.PathLike | None = None) -> dict[str, bool]:
    """``{file: sha256 matches}`` for the files of ``dataset`` present in the data directory."""
    info = get(dataset)
    root = Path(data_dir) if data_dir is not None else _resolve_data_dir()
    out = {}
    for f in info.files:
        p = root / dataset / f.name
        if p.exists():
            out[f.name] = sha256(p) == f.sha256
    return out


def load(name: str, *, data_dir: str | os.PathLike | None = None,
         chunks: Any = None) -> xr.Dataset:
    """The geoslide Dataset of a registered data set (``"kashmir"``, ``"ecuador"``).

    ``chunks``: None (numpy) or dask chunks (``{"y": 256, "x": 256}``, int, ``"auto"``).
    """
    info = get(name)
    folder = fetch(name, data_dir=data_dir)
    ds = info.build(folder, chunks)
    ds.attrs["geoslide:dataset"] = name
    return ds


def get(name: str) -> DatasetInfo:
    """The registry entry of ``name``."""
    key = name.lower()
    if key not in REGISTRY:
        raise KeyError(f"unknown data set {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[key]


def available() -> list[str]:
    """Names of the registered data sets."""
    return sorted(REGISTRY)


_resolve_data_dir = data_dir


# --- builders -----------------------------------------------------------------------------

def _add_slope(ds: xr.Dataset) -> xr.Dataset:
    """Add ``slope`` (degrees, Horn, edge-aware) from ``elevation``, first among the inputs."""
    from geoslide.prepare.derive import derive

    out = derive(ds, ["slope"])
    out.attrs["geoslide:continuous"] = ["slope"] + [
        v for v in out.attrs["geoslide:continuous"] if v != "slope"]
    return out[["slope"] + [v for v in out.data_vars if v != "slope"]]


def _build_kashmir(folder: Path, chunks: Any) -> xr.Dataset:
    from geoslide.prepare.stack import stack

    ds = stack(
        {"elevation": folder / "AW3D30.tif", "geology": folder / "Geology.tif",
         "landcover": folder / "Landcover.tif"},
        categorical=["geology", "landcover"], inventory=folder / "landslides.shp",
        year_range=(2000, 2014), year_field="Year_obs", chunks=chunks,
    )
    ds["elevation"].attrs.update(long_name="elevation (AW3D30)", units="m")
    return _add_slope(ds)


_ECUADOR_BANDS = ("slope", "cplan", "cprof", "elevation", "log10_carea")
_ECUADOR_UNITS = {"slope": "degrees", "cplan": "1/m", "cprof": "1/m", "elevation": "m",
                  "log10_carea": "log10(m2)"}


def _build_ecuador(folder: Path, chunks: Any) -> xr.Dataset:
    import rioxarray

    from geoslide.prepare.stack import stack

    path = folder / "ta.tif"
    ta = rioxarray.open_rasterio(path, masked=False, cache=False)
    ta.attrs["geoslide:source"] = str(path)
    bands = {n: ta.isel(band=[i]) for i, n in enumerate(_ECUADOR_BANDS)}
    ds = stack(bands, inventory=folder / "lsl_points.gpkg", label_field="lslpts",
               unlabelled="nodata", chunks=chunks)
    for v, u in _ECUADOR_UNITS.items():
        ds[v].attrs["units"] = u
    return ds


_LSL_HOW = ("Build it from the R package spDataLarge (CC0): in R, "
            "`data(\"lsl\", package = \"spDataLarge\"); sf::st_write(sf::st_as_sf(lsl, coords = "
            "c(\"x\", \"y\"), crs = 32717), \"lsl_points.gpkg\")` (350 points, field lslpts).")

REGISTRY: dict[str, DatasetInfo] = {
    "kashmir": DatasetInfo(
        name="kashmir",
        description=("Balakot, Kashmir (2005 earthquake zone): AW3D30 DEM (28.55 m, "
                     "EPSG:32643, 987 x 826 px), geology and land-cover classes, 3,819 "
                     "landslide polygons (2000..2014)."),
        source="GitHub pg971/SEPwC_landslides_python, folder data/ (copy of jhill1's teaching data)",
        licence="none stated: use for tests and benchmarks, do not redistribute",
        files=(
            RemoteFile("AW3D30.tif", _KASHMIR_URL + "AW3D30.tif",
                       "46081cd43c3680eae6ec7caf2cca5e752eb971f41d8209afce8086c4b0ba4040"),
            RemoteFile("Geology.tif", _KASHMIR_URL + "Geology.tif",
                       "8fc59477e117a81aab5af0e604c1f593b2b5c15f778ab21699c85b8e7715313e"),
            RemoteFile("Landcover.tif", _KASHMIR_URL + "Landcover.tif",
                       "6f364cc4a2158be7dab274a4e27cfcf8b97bfa4219648112fc3a8a7a5ed86302"),
            RemoteFile("landslides.shp", _KASHMIR_URL + "landslides.shp",
                       "8e3a526d68d06476c33fb222f44ec9ad17ae31bce8990b81c7fc3cc749bdbd49"),
            RemoteFile("landslides.shx", _KASHMIR_URL + "landslides.shx",
                       "15c4c4d4b734d78d72c6195bb624100158a3d1c21f1863cce0ae962fbdf1bd37"),
            RemoteFile("landslides.dbf", _KASHMIR_URL + "landslides.dbf",
                       "fe86223ca3011bfcc36dc37dd72a8016518f9b45a1589dd8ed5fdda7c286b90f"),
            RemoteFile("landslides.prj", _KASHMIR_URL + "landslides.prj",
                       "58368ff5825675f291b623e0132d25ce8d7e56c478dfb5431f84247fe1a80bd2"),
        ),
        build=_build_kashmir,
    ),
    "ecuador": DatasetInfo(
        name="ecuador",
        description=("Reserva Biologica San Francisco, Ecuador: terrain attributes (10 m, "
                     "EPSG:32717, 415 x 383 px) and 175 landslide + 175 stable points."),
        source="R package spDataLarge (GitHub Nowosad/spDataLarge: inst/raster/ta.tif, data/lsl.rda)",
        licence="CC0",
        files=(
            RemoteFile("ta.tif", _ECUADOR_TA_URL,
                       "cf0410ca2c1da8931bf6f7f234241c21d4851d9bdcfa19e6be26c9eca0e804be"),
            RemoteFile("lsl_points.gpkg", None,
                       "437de9d53685490d0cb8aad8c3414288d080090a43c0717b77712198b674cffd",
                       how_to_get=_LSL_HOW),
        ),
        build=_build_ecuador,
    ),
}
