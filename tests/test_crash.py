"""Crash consistency of the whole CLI flow (slow): `prepare`, `features`, `predict` and
`evaluate` interrupted by SIGINT (Ctrl-C) and SIGKILL, each time rerun with the same command:
the store then equals an uninterrupted run bit for bit, and nothing is left outside the store
and its report folder. Twice: the store on local disk, and on the local S3 server (moto),
where a rerun takes over the killed writer's lease at once (same host, its PID gone).

Interruptions are driven by progress, not by a timer: the command runs under
tests/interrupt_cli.py, which sends the signal right after a seeded random number of writes
(regions of `features` / `predict`, chunks of `prepare`'s new store, files of `evaluate`),
drawn from the count of the uninterrupted run, so every one lands while the command runs.

The data: a 200 x 200 px crop of the real Kashmir rasters and inventory, stored with 64 px
chunks (4 x 4 = 16 regions), and an LLR model trained once in the set-up.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_reliability import assert_same_store

pytestmark = pytest.mark.slow

SEED = 12
GEOSLIDE = [sys.executable, "-m", "geoslide"]
INTERRUPTED = [sys.executable, str(Path(__file__).with_name("interrupt_cli.py"))]
COMMANDS = {
    "prepare": ["prepare", "k.zarr", "--raster", "elevation=inputs/dem.tif",
                "--raster", "geology=inputs/geology.tif", "--raster",
                "landcover=inputs/landcover.tif", "--categorical", "geology",
                "--categorical", "landcover", "--derive", "slope",
                "--inventory", "inputs/landslides.gpkg", "--chunks", "64", "--overwrite",
                "--quiet", "--scheduler", "threads"],
    "features": ["features", "k.zarr", "--distances", "30", "100", "--quiet",
                 "--scheduler", "threads"],
    "predict": ["predict", "k.zarr", "model.pt", "--quiet", "--scheduler", "threads"],
    "evaluate": ["evaluate", "k.zarr", "model.pt", "--n-boot", "0", "--out", "report",
                 "--quiet"],
}
ROUNDS = {"prepare": 5, "features": 6, "predict": 5, "evaluate": 4}  # 20 interruptions


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def run(cwd: Path, stage: str, commands: dict, counted: bool = False) -> int | None:
    """Run a stage to completion (the plain command; ``counted``: under interrupt_cli.py,
    which interrupts nothing); its number of writes when counted."""
    cmd = INTERRUPTED + ["count", "0"] if counted else GEOSLIDE
    r = subprocess.run(cmd + commands[stage], cwd=cwd, env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"{stage}: {r.stderr[-2000:]}"
    if counted:
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("writes: "), r.stderr[-2000:]
        return int(last.split()[1])
    return None


def _commands(store: str) -> dict[str, list[str]]:
    return {stage: [store if a == "k.zarr" else a for a in args]
            for stage, args in COMMANDS.items()}


def _outside(bucket: str) -> list[str]:
    """What lies beside the store ``k.zarr`` in ``bucket`` (``s3://NAME``)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(bucket, use_listings_cache=False, skip_instance_cache=True)
    return sorted(Path(k).name for k in fs.ls(root) if Path(k).name != "k.zarr")


def crop(src: Path, dst: Path, window: tuple[slice, slice]) -> None:
    import rioxarray

    da = rioxarray.open_rasterio(src).isel(y=window[0], x=window[1])
    da.rio.to_raster(dst)


@pytest.fixture(scope="module")
def flow(tmp_path_factory, data_dir):
    """The reference run (uninterrupted): inputs, model, store snapshot after each stage,
    and each stage's number of writes."""
    import geopandas as gpd

    root = tmp_path_factory.mktemp("crash")
    ref = root / "ref"
    (ref / "inputs").mkdir(parents=True)
    k = data_dir / "kashmir"
    window = (slice(400, 600), slice(300, 500))
    for name, file in (("dem", "AW3D30.tif"), ("geology", "Geology.tif"),
                       ("landcover", "Landcover.tif")):
        crop(k / file, ref / "inputs" / f"{name}.tif", window)
    import rioxarray

    dem = rioxarray.open_rasterio(ref / "inputs" / "dem.tif")
    x0, x1 = float(dem.x.min()), float(dem.x.max())
    y0, y1 = float(dem.y.min()), float(dem.y.max())
    polys = gpd.read_file(k / "landslides.shp").cx[x0:x1, y0:y1]
    assert len(polys) > 20
    polys.to_file(ref / "inputs" / "landslides.gpkg")
    snaps, writes = {}, {}
    for stage in ("prepare", "features"):
        writes[stage] = run(ref, stage, COMMANDS, counted=True)
        snaps[stage] = root / f"{stage}.zarr"
        shutil.copytree(ref / "k.zarr", snaps[stage])
    r = subprocess.run(GEOSLIDE + ["train", "k.zarr", "--model", "llr", "--epochs", "2",
                                   "--split-core", "32", "--keep-failed", "--threads", "1",
                                   "--out", "model.pt", "--quiet"],
                       cwd=ref, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for stage in ("predict", "evaluate"):
        writes[stage] = run(ref, stage, COMMANDS, counted=True)
        snaps[stage] = root / f"{stage}.zarr"
        shutil.copytree(ref / "k.zarr", snaps[stage])
    assert writes["features"] == writes["predict"] == 16, writes  # regions
    assert writes["prepare"] >= 16 and writes["evaluate"] >= 2, writes  # chunks, files
    return {"ref": ref, "snaps": snaps, "writes": writes}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_interrupted_cli_flow_resumes_bit_identical(flow, where, tmp_path, request):
    """Every interrupted command, rerun, leaves the store equal to the uninterrupted local
    run's; the store on local disk or on S3 (inputs, model and report local)."""
    from geoslide.store import incomplete, regions_done

    rng = random.Random(SEED)
    snaps, writes = flow["snaps"], flow["writes"]
    work = tmp_path / "run"
    work.mkdir()
    shutil.copytree(flow["ref"] / "inputs", work / "inputs")
    shutil.copy(flow["ref"] / "model.pt", work / "model.pt")
    bucket = request.getfixturevalue("s3_bucket") if where == "s3" else None
    store = f"{bucket}/k.zarr" if bucket else str(work / "k.zarr")
    commands = _commands(store)
    interruptions, mid_write = 0, {s: 0 for s in COMMANDS}
    log = []
    for stage in COMMANDS:
        first = rng.randrange(2)
        for i in range(ROUNDS[stage]):  # both signals in every stage, in turn
            sig = (signal.SIGINT, signal.SIGKILL)[(first + i) % 2]
            after = rng.randint(1, writes[stage])  # the signal right after this write
            proc = subprocess.run(INTERRUPTED + [sig.name, str(after)] + commands[stage],
                                  cwd=work, env=_env(), capture_output=True, text=True,
                                  timeout=300)
            err = proc.stderr
            if sig == signal.SIGKILL:
                assert proc.returncode == -signal.SIGKILL, (stage, after, err[-2000:])
            else:  # Ctrl-C: exit 130 and one line
                assert proc.returncode == 130, (stage, after, err[-2000:])
                assert "interrupted" in err and "Traceback" not in err, err[-2000:]
            interruptions += 1
            if stage in ("features", "predict") and incomplete(store):
                mid_write[stage] += 0 < regions_done(store) < 16
            log.append((stage, sig.name, after, proc.returncode))
            run(work, stage, commands)  # the same command again: finishes
            assert_same_store(store, snaps[stage])
            left = sorted(os.listdir(work))
            expected = ["inputs", "model.pt"] + ([] if bucket else ["k.zarr"]) + (
                ["report"] if (work / "report").exists() else [])
            assert left == sorted(expected), (stage, left)
            assert not bucket or _outside(bucket) == [], (stage, _outside(bucket))
            if stage == "evaluate":
                assert (work / "report" / "metrics.json").exists()
    print("\n".join(map(str, log)))
    assert interruptions == sum(ROUNDS.values()) == 20, log
    assert mid_write["features"] >= 1 and mid_write["predict"] >= 1, (mid_write, log)
