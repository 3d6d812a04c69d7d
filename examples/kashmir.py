"""Kashmir, end to end with the Python API (the same steps as `geoslide demo`).

    python examples/kashmir.py [OUT]        # default OUT = out/kashmir-example

Prepares the store, computes the aligned features, trains LLR, CNN and SACNN with the quick
preset on the band split (test = the second fifth of the rows), predicts SACNN's whole map,
and writes the evaluation report with the scikit-learn peers.
"""
from __future__ import annotations

import sys
from pathlib import Path

import geoslide
from geoslide.features.align import aligned_features
from geoslide.evaluation.evaluate import evaluate
from geoslide.maps.predict import predict
from geoslide.store import open_zarr, to_zarr, write_variables
from geoslide.learn.train import train

out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/kashmir-example")
store = out / "kashmir.zarr"

# 1. rasters + polygons -> Zarr store (987 x 826 px, 28.55 m)
to_zarr(geoslide.datasets.load("kashmir"), store, mode="w")
# 2. aligned features at 30 / 100 / 300 m, written region by region
write_variables(aligned_features(open_zarr(store), gathered=False), store)
ds = open_zarr(store).load()

# 3. train three models on the band split (the split is saved in each model file)
models = {}
for name in ("llr", "cnn", "sacnn"):
    result = train(ds, name, preset="quick", split="band", band=1, out=out / f"{name}.pt")
    models[name] = result.model
    print(f"{name}: best epoch {result.best_epoch}, validation NLL {result.best_val_nll:.4f}")

# 4. SACNN's seamless map on the input grid -> store + Cloud-Optimised GeoTIFF
probs = predict(ds, models["sacnn"])
write_variables(probs.to_dataset(name="susceptibility_sacnn"), store)
probs.geoslide.to_geotiff(out / "susceptibility_sacnn.tif")

# 5. every model and the sklearn peers on the test rows: report.md, metrics.json, figures
ev = evaluate(open_zarr(store).load(), list(models.values()), peers=True, out=out / "report")
print(ev.table())
print("report:", out / "report" / "report.md")
