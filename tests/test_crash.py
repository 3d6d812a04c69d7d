"""Crash consistency of the whole CLI flow (slow): `prepare`, `features`, `predict` and
`evaluate` interrupted at seeded random points by SIGINT (Ctrl-C) and SIGKILL, each time
rerun with the same command: the store then equals an uninterrupted run bit for bit, and
nothing is left outside the store and its report folder.

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
import time
from pathlib import Path

import pytest

from test_reliability import assert_same_store

pytestmark = pytest.mark.slow

SEED = 12
GEOSLIDE = [sys.executable, "-m", "geoslide"]
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
WRITE_S = {"prepare": 0.5, "features": 1.5, "predict": 0.2}  # about how long each writes


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def run(cwd: Path, stage: str) -> float:
    """Run a stage to completion; its wall time."""
    t0 = time.perf_counter()
    r = subprocess.run(GEOSLIDE + COMMANDS[stage], cwd=cwd, env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"{stage}: {r.stderr[-2000:]}"
    return time.perf_counter() - t0


def writing(cwd: Path, stage: str) -> bool:
    """Whether the stage is writing: a hidden temporary store (prepare), a first region
    recorded as done (features, predict), a report file (evaluate)."""
    if stage == "prepare":
        return any(n.startswith(".k.zarr.tmp-") for n in os.listdir(cwd))
    if stage in ("features", "predict"):
        done = cwd / "k.zarr" / "_geoslide_progress" / "done"
        return any(f != "zarr.json" for _, _, files in os.walk(done) for f in files)
    return (cwd / "report").exists() and any((cwd / "report").iterdir())


def crop(src: Path, dst: Path, window: tuple[slice, slice]) -> None:
    import rioxarray

    da = rioxarray.open_rasterio(src).isel(y=window[0], x=window[1])
    da.rio.to_raster(dst)


@pytest.fixture(scope="module")
def flow(tmp_path_factory, data_dir):
    """The reference run (uninterrupted): inputs, model, store snapshot after each stage,
    and each stage's wall time."""
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
    snaps, times = {}, {}
    for stage in ("prepare", "features"):
        times[stage] = run(ref, stage)
        snaps[stage] = root / f"{stage}.zarr"
        shutil.copytree(ref / "k.zarr", snaps[stage])
    r = subprocess.run(GEOSLIDE + ["train", "k.zarr", "--model", "llr", "--epochs", "2",
                                   "--split-core", "32", "--keep-failed", "--threads", "1",
                                   "--out", "model.pt", "--quiet"],
                       cwd=ref, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for stage in ("predict", "evaluate"):
        times[stage] = run(ref, stage)
        snaps[stage] = root / f"{stage}.zarr"
        shutil.copytree(ref / "k.zarr", snaps[stage])
    work = root / "run"
    work.mkdir()
    shutil.copytree(ref / "inputs", work / "inputs")
    shutil.copy(ref / "model.pt", work / "model.pt")
    return {"work": work, "snaps": snaps, "times": times}


def test_interrupted_cli_flow_resumes_bit_identical(flow):
    from geoslide.store import incomplete, regions_done

    rng = random.Random(SEED)
    work, snaps, times = flow["work"], flow["snaps"], flow["times"]
    interruptions, mid_write = 0, {s: 0 for s in COMMANDS}
    log = []
    for stage in COMMANDS:
        for _ in range(ROUNDS[stage]):
            sig = rng.choice([signal.SIGINT, signal.SIGKILL])
            at_write = stage != "evaluate" and rng.random() < 0.75
            delay = (rng.uniform(0.0, WRITE_S[stage]) if at_write else
                     rng.uniform(0.1, 0.9) * times[stage])
            proc = subprocess.Popen(GEOSLIDE + COMMANDS[stage], cwd=work, env=_env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            end = time.time() + 120
            while at_write and proc.poll() is None and not writing(work, stage) \
                    and time.time() < end:
                time.sleep(0.01)
            time.sleep(delay)
            alive = proc.poll() is None
            if alive:
                proc.send_signal(sig)
            _, err = proc.communicate(timeout=120)
            if alive:
                interruptions += 1
                if sig == signal.SIGKILL:
                    assert proc.returncode == -signal.SIGKILL
                else:  # Ctrl-C: exit 130 and one line; -SIGINT when it came while
                    # Python was exiting after the command finished (handlers reset)
                    assert proc.returncode in (130, 0, -signal.SIGINT), err[-2000:]
                    if proc.returncode == 130:
                        assert "interrupted" in err and "Traceback" not in err, err[-2000:]
                if stage in ("features", "predict") and (work / "k.zarr").exists() \
                        and incomplete(work / "k.zarr"):
                    mid_write[stage] += 0 < regions_done(work / "k.zarr") < 16
            else:
                assert proc.returncode == 0, err[-2000:]
            log.append((stage, signal.Signals(sig).name, at_write, round(delay, 2), alive,
                        proc.returncode))
            run(work, stage)  # the same command again: finishes
            assert_same_store(work / "k.zarr", snaps[stage])
            left = sorted(os.listdir(work))
            expected = ["inputs", "k.zarr", "model.pt"] + (["report"] if (
                work / "report").exists() else [])
            assert left == expected, (stage, left)
            if stage == "evaluate":
                assert (work / "report" / "metrics.json").exists()
    print("\n".join(map(str, log)))
    assert interruptions >= 20, log
    assert mid_write["features"] >= 1 and mid_write["predict"] >= 1, (mid_write, log)
