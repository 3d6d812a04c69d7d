"""Interruptions, unsafe overwrites, read-only places, concurrent writers and unhelpful
messages (issue 12), each reproduced at the CLI level on the real Kashmir data: every case
ends in a typed error (exit 2, one line on stderr) or a correct, bit-identical result."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from geoslide.cli import main

THREADS = ["--scheduler", "threads"]
FEATURES = ["--distances", "100", "--features", "slope"]  # 3 variables, quick


# --------------------------------------------------------------------------- helpers
FRESH = {"use_listings_cache": False, "skip_instance_cache": True}
"""fsspec options of a store URL read by this long-lived process while CLI processes write
it: no listing cached from an earlier read."""


def assert_same_store(a: Path | str, b: Path | str) -> None:
    """Bit for bit: the same arrays (dtype, shape, chunks, bytes) and attrs, no leftovers
    (local folders or store URLs)."""
    import fsspec
    import zarr

    def group(p: Path | str) -> zarr.Group:
        fresh = {"storage_options": FRESH} if "://" in str(p) else {}
        return zarr.open_group(str(p), mode="r", use_consolidated=False, **fresh)

    ga, gb = group(a), group(b)
    assert dict(ga.attrs) == dict(gb.attrs)
    assert sorted(ga.array_keys()) == sorted(gb.array_keys())
    assert sorted(ga.group_keys()) == sorted(gb.group_keys()) == []
    for name in ga.array_keys():
        x, y = ga[name], gb[name]
        assert (x.dtype, x.shape, x.chunks) == (y.dtype, y.shape, y.chunks), name
        assert dict(x.attrs) == dict(y.attrs), name
        assert x[...].tobytes() == y[...].tobytes(), name
    for p in (str(a), str(b)):
        fs, root = fsspec.core.url_to_fs(p, **(FRESH if "://" in p else {}))
        assert not fs.exists(f"{root}/geoslide.lock"), p
        assert not fs.exists(f"{root}/_geoslide_progress"), p


def one_line_error(err: str, command: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip() and "note:" not in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"geoslide {command}: error: "), err
    return lines[0]


def siblings(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path.parent) if n != path.name)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def master(tmp_path_factory, data_dir) -> Path:
    """`geoslide prepare kashmir` with 256 px chunks: 4 x 4 = 16 regions."""
    out = tmp_path_factory.mktemp("master") / "kashmir.zarr"
    assert main(["prepare", "kashmir", str(out), "--chunks", "256", "--quiet", *THREADS]) == 0
    return out


@pytest.fixture()
def copy(master, tmp_path):
    def make(name: str = "kashmir.zarr") -> Path:
        dst = tmp_path / name
        shutil.copytree(master, dst)
        return dst

    return make


@pytest.fixture(scope="module")
def model_file(master, tmp_path_factory) -> Path:
    """An LLR model on the store's inputs (seeded weights; what `geoslide train` writes)."""
    import torch

    from geoslide.learn.inputs import compute_normalization, default_features
    from geoslide.learn.modelfile import TrainedModel, grid_crs, grid_resolution
    from geoslide.learn.models import build
    from geoslide.store import open_zarr

    ds = open_zarr(master)
    feats = default_features(ds)
    torch.manual_seed(0)
    model = TrainedModel(build("llr", len(feats)), "llr", feats,
                         compute_normalization(ds, feats), core=64, halo=0,
                         resolution=grid_resolution(ds), crs=grid_crs(ds),
                         config={"in_channels": len(feats)})
    return model.save(tmp_path_factory.mktemp("models") / "llr.pt")


# --------------------------------------------------------------------------- 1. resume
def test_features_interrupted_resumes_from_cli(copy, capsys, interrupt_after, settled_regions):
    from geoslide.store import incomplete

    ref, store = copy("ref.zarr"), copy()
    assert main(["features", str(ref), *FEATURES, "--quiet", *THREADS]) == 0
    with interrupt_after(5):  # Ctrl-C after 5 of 16 regions
        assert main(["features", str(store), *FEATURES, "--quiet", *THREADS]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert 5 <= settled_regions(store) < 16
    assert incomplete(store) == ["winner_up100"]   # what the aligned features are read through
    # a command reading the unfinished inputs names the command that finishes them
    assert main(["train", str(store), "--model", "sacnn", "--quiet"]) == 2
    line = one_line_error(capsys.readouterr().err, "train")
    assert f"`geoslide features {store} --distances 100 --features slope`" in line
    assert "resumes" in line
    # the same command resumes, and the store equals an uninterrupted run bit for bit
    assert main(["features", str(store), *FEATURES, "--quiet", *THREADS]) == 0
    assert incomplete(store) == []
    assert_same_store(store, ref)


def test_predict_interrupted_resumes_and_train_evaluate_still_work(
        copy, model_file, tmp_path, capsys, interrupt_after, settled_regions):
    from geoslide.store import incomplete

    ref, store = copy("ref.zarr"), copy()
    assert main(["predict", str(ref), str(model_file), "--quiet", *THREADS]) == 0
    with interrupt_after(3):
        assert main(["predict", str(store), str(model_file), "--quiet", *THREADS]) == 130
    assert settled_regions(store) < 16 and incomplete(store) == ["susceptibility_llr"]
    capsys.readouterr()
    # train and evaluate use the complete inputs; the unfinished map is left out (a note)
    out = tmp_path / "t.pt"
    assert main(["train", str(store), "--model", "llr", "--epochs", "1", "--keep-failed",
                 "--threads", "1", "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "note:" in err and "susceptibility_llr" in err and "geoslide predict" in err
    history = Path(f"{out}.history.json")  # strict JSON: no bare NaN
    json.loads(history.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    rep = tmp_path / "report"
    assert main(["evaluate", str(store), str(model_file), "--n-boot", "0", "--out", str(rep),
                 "--quiet"]) == 0
    assert (rep / "metrics.json").exists()
    # the same command resumes the map, bit-identical to an uninterrupted run
    assert main(["predict", str(store), str(model_file), "--quiet", *THREADS]) == 0
    assert incomplete(store) == []
    assert_same_store(store, ref)


# --------------------------------------------------------------------------- 2. overwrite
def test_overwrite_replaces_only_geoslide_stores(tmp_path, capsys, data_dir):
    from geoslide.errors import OverwriteError
    from geoslide.store import to_zarr

    thesis = tmp_path / "out.zarr"
    thesis.mkdir()
    (thesis / "thesis.txt").write_text("four years of work")
    plain = tmp_path / "plain.zarr"
    plain.write_text("not a store")
    for path, found in ((thesis, "a folder holding 1 entry (thesis.txt)"),
                        (plain, "a file (11 bytes)")):
        assert main(["prepare", "kashmir", str(path), "--overwrite", "--quiet", *THREADS]) == 2
        line = one_line_error(capsys.readouterr().err, "prepare")
        assert found in line and "not a geoslide store" in line and "left untouched" in line
    assert (thesis / "thesis.txt").read_text() == "four years of work"
    assert plain.read_text() == "not a store"
    assert sorted(os.listdir(tmp_path)) == ["out.zarr", "plain.zarr"]  # no hidden .old-*
    with pytest.raises(OverwriteError, match=r"thesis\.txt"):  # the library refuses too
        from geoslide.prepare.datasets import load

        to_zarr(load("kashmir", data_dir=data_dir), thesis, mode="w")


def test_overwrite_keeps_old_store_until_new_is_complete(tmp_path, capsys):
    from dask.callbacks import Callback

    from geoslide.store import open_zarr

    out = tmp_path / "k.zarr"
    assert main(["prepare", "kashmir", str(out), "--chunks", "256", "--quiet", *THREADS]) == 0
    before = open_zarr(out).slope.values.copy()

    class CtrlC(Callback):  # Ctrl-C in the middle of the new store's write
        seen = 0

        def _posttask(self, key, result, dsk, state, id):
            CtrlC.seen += 1
            if CtrlC.seen == 40:
                raise KeyboardInterrupt

    with CtrlC():
        assert main(["prepare", "kashmir", str(out), "--chunks", "512", "--overwrite",
                     "--quiet", *THREADS]) == 130
    assert os.listdir(tmp_path) == ["k.zarr"]
    kept = open_zarr(out)
    assert kept.slope.chunks[0][0] == 256  # the old store, intact
    np.testing.assert_array_equal(kept.slope.values, before)
    assert main(["prepare", "kashmir", str(out), "--chunks", "512", "--overwrite",
                 "--quiet", *THREADS]) == 0
    assert open_zarr(out).slope.chunks[0][0] == 512 and os.listdir(tmp_path) == ["k.zarr"]


def test_leftovers_of_killed_writes_are_recovered(master, tmp_path):
    from geoslide.store import recover
    from geoslide.store.files import _HOST

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "k.zarr"
    tmp = tmp_path / f".k.zarr.tmp-{_HOST}-{dead.pid}-0123abcd"
    tmp.mkdir()
    (tmp / "zarr.json").write_text("{}")
    old = tmp_path / f".k.zarr.old-{_HOST}-{dead.pid}-4567cdef"
    shutil.copytree(master, old)  # killed between its two renames: the store is aside
    alive = tmp_path / f".k.zarr.tmp-{_HOST}-{os.getpid()}-89abcdef"
    alive.mkdir()  # a running writer's: kept
    assert sorted(p.name for p in recover(out)) == sorted([tmp.name, old.name])
    assert out.exists() and not old.exists() and not tmp.exists() and alive.exists()
    assert_same_store(out, master)


# --------------------------------------------------------------------------- 3. read-only
def test_store_under_a_file_is_a_typed_error(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    out = tmp_path / "notes.txt" / "k.zarr"
    assert main(["prepare", "kashmir", str(out), "--quiet", *THREADS]) == 2
    line = one_line_error(capsys.readouterr().err, "prepare")
    assert str(out) in line and "is a file, not a folder" in line and ".tmp-" not in line


_RO_SCRIPT = textwrap.dedent("""
    import contextlib, io, json, sys
    from geoslide.cli import main
    res = {}
    for name, argv in json.loads(sys.argv[1]).items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(argv)
        res[name] = [rc, err.getvalue()]
    print(json.dumps(res))
""")


def test_read_only_folder_is_a_typed_error(copy, tmp_path, capsys):
    """A store in a folder without write permission (chmod 0o555). Root ignores
    permissions: then the folder is made read-only by a read-only bind mount in a private
    mount namespace (`unshare -m`), which root cannot write either."""
    store = copy()
    ro = store.parent
    cmds = {"prepare": ["prepare", "kashmir", str(ro / "new.zarr"), "--quiet", *THREADS],
            "features": ["features", str(store), *FEATURES, "--quiet", *THREADS]}
    if os.geteuid() != 0:
        for p in [ro, *store.rglob("*"), store]:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            res = {}
            for name, argv in cmds.items():
                rc = main(argv)
                res[name] = [rc, capsys.readouterr().err]
        finally:
            for p in [ro, store, *store.rglob("*")]:
                p.chmod(0o755 if p.is_dir() else 0o644)
    else:
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: no way to make a folder read-only")
        shell = (f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} {ro} && "
                 f"exec {sys.executable} -c \"$0\" \"$1\"")
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", shell,
                            _RO_SCRIPT, json.dumps(cmds)], capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0 and "mount" in r.stderr and not r.stdout:
            pytest.skip(f"running as root and cannot mount read-only: {r.stderr.strip()}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
    rc, err = res["prepare"]
    line = one_line_error(err, "prepare")
    assert rc == 2 and str(ro / "new.zarr") in line and ".tmp-" not in line
    assert "read-only" in line and "fix:" in line
    rc, err = res["features"]
    line = one_line_error(err, "features")
    assert rc == 2 and str(store) in line and "read-only" in line
    assert not (ro / "new.zarr").exists() and siblings(store) == []


# --------------------------------------------------------------------------- 4. messages
def test_incomplete_message_is_short_and_names_the_command(copy, capsys, interrupt_after,
                                                          settled_regions):
    from geoslide.store import incomplete

    store = copy()
    with interrupt_after(1):  # default features: 3 distances, 22 inputs gathered + dz + azimuth
        assert main(["features", str(store), "--quiet", *THREADS]) == 130
    settled_regions(store)
    capsys.readouterr()
    n = len(incomplete(store))
    assert n == 3  # 3 distances: one winner variable each
    assert main(["train", str(store), "--model", "llr", "--quiet"]) == 2
    line = one_line_error(capsys.readouterr().err, "train")
    assert len(line.replace(str(store), "STORE")) < 300, line  # was 1.6 KB
    assert all(f"winner_up{d}" in line for d in (30, 100, 300)), line
    assert f"`geoslide features {store} --distances 30 100 300`" in line


@pytest.fixture(scope="module")
def evil_pickle_bytes() -> bytes:
    """A model file that holds a pickled object (torch refuses it with weights_only)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"format": "geoslide-model", "payload": Path(".")}, buf)
    return buf.getvalue()


def test_unreadable_model_files_are_typed_without_torch_advice(
        master, model_file, tmp_path, capsys, evil_pickle_bytes):
    good = model_file.read_bytes()
    cases = {"garbled.pt": os.urandom(4096), "truncated.pt": good[: len(good) // 2],
             "pickled.pt": evil_pickle_bytes, "empty.pt": b""}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert main(["predict", str(master), str(path), "--quiet", *THREADS]) == 2, name
        line = one_line_error(capsys.readouterr().err, "predict")
        assert str(path) in line and "not a readable geoslide model file" in line
        assert "weights_only" not in line and "trust" not in line, line
    from geoslide.errors import GeoslideError, ModelFileError, StoreError
    from geoslide.learn.modelfile import load_model

    with pytest.raises(ModelFileError) as info:
        load_model(tmp_path / "pickled.pt")
    # one of the four bases under GeoslideError, not a store error
    assert isinstance(info.value, GeoslideError) and not isinstance(info.value, StoreError)


def test_feature_mismatch_names_how_to_get_the_variables(master, tmp_path, capsys):
    from geoslide.learn.modelfile import TrainedModel
    from geoslide.learn.models import build

    feats = ["slope", "aspect_sin", "aspect_cos", "geology_2", "geology_21", "slope_up100",
             "dz_up100", "azimuth_up100@sin", "azimuth_up100@cos", "rainfall"]
    model = TrainedModel(build("llr", len(feats)), "llr", feats,
                         {f: [0.0, 1.0] for f in feats}, core=64, halo=0, resolution=28.5549,
                         config={"in_channels": len(feats)})
    path = model.save(tmp_path / "other.pt")
    assert main(["predict", str(master), str(path), "--quiet", *THREADS]) == 2
    line = one_line_error(capsys.readouterr().err, "predict")
    assert "needs 7 variables" in line and "(+4 more)" in line
    assert "`geoslide features STORE --distances 100 --features slope`" in line
    assert "--derive aspect" in line
    assert "--vocabulary geology=CSV" in line and "21" in line
    assert "--raster NAME=PATH" in line  # rainfall: a raster of the training store


def test_bad_band_and_fold_are_typed_errors(master, model_file, capsys):
    for argv in (["train", str(master), "--model", "llr", "--band", "7"],
                 ["train", str(master), "--model", "llr", "--band", "5"],
                 ["train", str(master), "--model", "llr", "--split", "kfold", "--fold", "9"],
                 ["evaluate", str(master), str(model_file), "--band", "7"],
                 ["evaluate", str(master), str(model_file), "--split", "kfold", "--fold", "9"]):
        assert main(argv) == 2, argv
        line = one_line_error(capsys.readouterr().err, argv[0])
        assert "count from 0" in line and "fix:" in line


# --------------------------------------------------------------------------- 5. CRS
def test_inventory_in_another_crs_is_reprojected(tmp_path, capsys, data_dir):
    import geopandas as gpd

    k = data_dir / "kashmir"
    wgs = tmp_path / "landslides_wgs84.gpkg"
    gpd.read_file(k / "landslides.shp").to_crs("EPSG:4326").to_file(wgs)
    base = ["--raster", f"elevation={k / 'AW3D30.tif'}", *THREADS]
    assert main(["prepare", str(tmp_path / "a.zarr"), *base, "--inventory", str(wgs)]) == 0
    out = capsys.readouterr().out
    assert "reprojected from EPSG:4326 to the rasters' EPSG:32643" in out
    assert main(["prepare", str(tmp_path / "b.zarr"), *base, "--inventory", str(wgs),
                 "--no-reproject-inventory"]) == 2
    line = one_line_error(capsys.readouterr().err, "prepare")
    assert "EPSG:4326" in line and "--no-reproject-inventory" in line
    assert not (tmp_path / "b.zarr").exists()
    # the old flag is still accepted (a no-op), and the labels match the original file's
    assert main(["prepare", str(tmp_path / "c.zarr"), *base, "--inventory", str(wgs),
                 "--reproject-inventory", "--quiet"]) == 0
    assert main(["prepare", str(tmp_path / "d.zarr"), *base, "--inventory",
                 str(k / "landslides.shp"), "--quiet"]) == 0
    from geoslide.store import open_zarr

    a = open_zarr(tmp_path / "c.zarr").landslide.values == 1
    b = open_zarr(tmp_path / "d.zarr").landslide.values == 1
    assert (a != b).sum() < 0.01 * b.sum()  # reprojection round-off only


# --------------------------------------------------------------------------- 6. the lock
_HOLDER = textwrap.dedent("""
    import sys, time
    from geoslide.store import store_lock
    with store_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
""")


def test_second_writer_stops_and_stale_lock_is_taken_over(copy, capsys):
    from geoslide.errors import StoreLockedError
    from geoslide.store import store_lock

    store = copy()
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(store)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["features", str(store), *FEATURES, "--quiet", *THREADS]) == 2
        line = one_line_error(capsys.readouterr().err, "features")
        assert f"PID {holder.pid}" in line and str(store / "geoslide.lock") in line
        with pytest.raises(StoreLockedError):
            with store_lock(store):
                pass
        assert "winner_up100" not in os.listdir(store)  # nothing written meanwhile
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (store / "geoslide.lock").exists()  # left by the killed holder: stale
    assert main(["features", str(store), *FEATURES, "--quiet", *THREADS]) == 0
    assert not (store / "geoslide.lock").exists()
    assert "winner_up100" in os.listdir(store)
