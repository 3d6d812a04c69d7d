"""Issue 28 item 3: the bugs a new user hits on the first try, each on the real data.

The README's command block runs as written; a label-raster inventory prepares with exit 0; a
netCDF step is picked on the command line (``file.nc:VAR[time=2]``); ``to_geotiff`` takes
``(x, y)`` like ``stack``; a one-variable Dataset is a label raster; ``--inventory``'s help
names every accepted kind; ``aligned_features`` returns the new variables only (documented).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geoslide.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


# --- 1. the README's command block -------------------------------------------------------

def _readme_commands() -> list[str]:
    """The README's ```bash lines prepare kashmir, features, train, predict, evaluate."""
    text = (ROOT / "README.md").read_text()
    lines = [ln.split("#", 1)[0].strip() for block in re.findall(r"```bash\n(.*?)```", text,
                                                                   re.S)
             for ln in block.splitlines()]
    wanted = ("geoslide prepare kashmir", "geoslide features", "geoslide train",
              "geoslide predict", "geoslide evaluate")
    return [next(ln for ln in lines if ln.startswith(w)) for w in wanted]


def test_train_out_defaults_beside_the_store():
    from geoslide.cli.train import default_out

    args = build_parser(["train"]).parse_args(
        ["train", "out/kashmir.zarr", "--model", "sacnn", "--split", "band"])
    assert args.out is None
    assert default_out(args.store, args.model) == Path("out/sacnn.pt")
    assert default_out("out/kashmir.zarr/", "llr") == Path("out/llr.pt")
    assert default_out("kashmir.zarr", "cnn") == Path("cnn.pt")
    # the README's next line reads the model where train wrote it
    train, predict = _readme_commands()[2:4]
    store, model = shlex.split(predict)[2:4]
    assert default_out(shlex.split(train)[2], "sacnn") == Path(model)
    assert store == shlex.split(train)[2]


def test_train_help_says_where_the_model_goes(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default <folder of STORE>/<model>.pt" in text


@pytest.mark.slow
def test_readme_command_block_runs(data_dir, tmp_path):
    env = {**os.environ, "GEOSLIDE_DATA_DIR": str(data_dir), "GEOSLIDE_SCHEDULER": "threads",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for line in _readme_commands():
        if line.startswith("geoslide train"):
            line += " --epochs 1 --keep-failed --threads 1 --quiet"  # the recipe, shortened
        res = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=1800)
        assert res.returncode == 0, f"{line}: exit {res.returncode}\n{res.stderr[-3000:]}"
    assert (tmp_path / "out" / "sacnn.pt").is_file()


# --- 2. a label-raster inventory on the command line --------------------------------------

@pytest.fixture(scope="module")
def kashmir_mask(kashmir, tmp_path_factory) -> Path:
    """Kashmir's landslide label (1 inside a polygon, 0 elsewhere) as a GeoTIFF on the DEM grid."""
    path = tmp_path_factory.mktemp("mask") / "mask.tif"
    lab = kashmir["landslide"].astype(np.int8)
    lab.rio.write_crs(kashmir.rio.crs).rio.to_raster(path)
    return path


def test_prepare_with_a_label_raster_inventory_exits_0(data_dir, kashmir, kashmir_mask,
                                                        tmp_path, capsys):
    from geoslide.store import open_zarr

    out = tmp_path / "mask.zarr"
    dem = data_dir / "kashmir" / "AW3D30.tif"
    assert main(["prepare", str(out), "--raster", f"elevation={dem}", "--inventory",
                 str(kashmir_mask), "--scheduler", "threads"]) == 0
    printed = capsys.readouterr().out
    n = int((kashmir["landslide"].values == 1).sum())
    assert f"label raster: {n:,} landslide pixels" in printed
    written = open_zarr(out).load()
    np.testing.assert_array_equal(written["landslide"].values == 1,
                                  kashmir["landslide"].values == 1)
