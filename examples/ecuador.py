"""Ecuador (Reserva Biológica San Francisco), end to end with the Python API.

    python examples/ecuador.py [OUT]        # default OUT = out/ecuador-example

The script the notebook examples/ecuador.ipynb mirrors, cell for cell (each `# %%` is a cell).
Unlike Kashmir, the Ecuador inventory is 350 points (175 landslide initiation points, 175
sampled stable points): every other pixel has label -1, so training and metrics see only the
labelled points, and the test band holds a few dozen points: expect noisy AUCs.
"""
# %% [markdown]
# # Ecuador: susceptibility map from 5 terrain attributes and 350 inventory points
# The same steps as `geoslide demo` on the Ecuador data (10 m pixels, so the looking
# distances 30 / 100 / 300 m are 3 / 10 / 30 pixels).

# %%
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import geoslide
from geoslide.features.align import aligned_features
from geoslide.evaluation.evaluate import evaluate
from geoslide.evaluation.report import write_report
from geoslide.maps.predict import predict
from geoslide.store import open_zarr, to_zarr, write_variables
from geoslide.learn.train import train

out = Path(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-")
           else "out/ecuador-example")
store = out / "ecuador.zarr"
plt.rcParams["figure.dpi"] = 80  # small inline figures (the notebook stays light)

# %% [markdown]
# ## 1. The store: slope, plan and profile curvature, elevation, log10 catchment area

# %%
ds = geoslide.datasets.load("ecuador")
to_zarr(ds, store, mode="w", progress=False)
labels = ds["landslide"].values
print(ds.sizes, "landslide points:", int((labels == 1).sum()), "stable points:",
      int((labels == 0).sum()))

# %% [markdown]
# ## 2. Aligned features (30 / 100 / 300 m)

# %%
write_variables(aligned_features(open_zarr(store), gathered=False), store, progress=False)
ds = open_zarr(store).load()
print(sorted(v for v in ds.data_vars if "_up" in v)[:8], "...")

# %% [markdown]
# ## 3. Train LLR and SACNN (quick preset, band split: test = rows [H/5, 2H/5))

# %%
models = {}
for name in ("llr", "sacnn"):
    result = train(ds, name, preset="quick", split="band", band=1, out=out / f"{name}.pt",
                   progress=False)
    models[name] = result.model
    print(f"{name}: best epoch {result.best_epoch}, validation NLL {result.best_val_nll:.4f}")

# %% [markdown]
# ## 4. The whole map, on the input grid, written to the store and as a COG

# %%
probs = predict(ds, models["sacnn"], progress=False)
write_variables(probs.to_dataset(name="susceptibility_sacnn"), store, progress=False)
probs.geoslide.to_geotiff(out / "susceptibility_sacnn.tif")
print(probs.rio.crs, probs.shape, "NaN share:", float(np.isnan(probs.values).mean()))

# %% [markdown]
# ## 5. Look at the map
# Probabilities over a hillshade of the DEM (`ds.elevation`), the inventory from the label
# raster: sparse here, so the 175 landslide points are red markers and the sampled
# stable points grey ones. A DataArray does the same with
# `probs.geoslide.plot(inventory="points.gpkg", hillshade=ds.elevation)`; a big raster is
# decimated to about the figure's pixels before anything is computed.

# %%
ds["susceptibility_sacnn"] = probs
ax = ds.geoslide.plot("susceptibility_sacnn", title="SACNN susceptibility, Ecuador")
ax.figure.savefig(out / "map_sacnn.png")

# %% [markdown]
# ## 6. Evaluation against the scikit-learn peers

# %%
ds = open_zarr(store).load()
ev = evaluate(ds, list(models.values()), peers=True, progress=False)
files = write_report(ev, out / "report", ds=ds)
print(ev.table())
print("test points:", ev.dataset["sets"]["test"]["scored"],
      "of which landslides:", ev.dataset["sets"]["test"]["scored_landslides"])
print("report:", files["report"])

# %% [markdown]
# ## 7. Two of the report's figures, inline (the report folder holds all of them as PNGs)

# %%
from geoslide.evaluation import plots

results = {r.get("label", n): r for n, r in ev.results.items()}
plots.roc_figure(results)

# %%
plots.pr_figure(results)
