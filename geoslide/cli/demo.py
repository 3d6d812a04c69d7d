"""``geoslide demo``: the whole pipeline on the real Kashmir data, end to end.

    geoslide demo                      # llr, cnn, sacnn, quick preset
    geoslide demo --full               # all six models: random, llr, nn, sann, cnn, sacnn
    geoslide demo --out out/demo --fresh

Steps: (1) prepare the Zarr store OUT/kashmir.zarr from the rasters and the landslide polygons;
(2) compute the aligned features (30/100/300 m) into it; (3) train the models with the quick
preset on the band split (test = the second fifth of the rows) into OUT/models/<model>.pt,
and fit the scikit-learn peers, side by side in one process per free core, each on one thread
(so the models are the same on any machine, busy or idle);
(4) predict each model's whole map into the store (``susceptibility_<model>``) and export the
map of the model of lowest validation NLL (the rule of ``geoslide compare``) as a
Cloud-Optimised GeoTIFF OUT/susceptibility_<model>.tif; (5) evaluate every model and the
scikit-learn peers on the test rows: OUT/report/report.md (opening with the verdict: which
map is best on the test rows, by how much, and which map was written and why),
metrics.json and figures. OUT/timings.json records the seconds each step took and those of
each job run side by side (``benchmarks/demo.py`` reads it).

Re-running with the same OUT reuses what is complete: the store, its aligned features, and
model files trained with the same preset, epochs and split (a model file is only written once
its training has finished); maps are recomputed only for new weights, and the report is rewritten.
``--fresh`` deletes OUT/kashmir.zarr, OUT/models and OUT/report first and redoes everything.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

QUICK_MODELS = ("llr", "cnn", "sacnn")
ALL_MODELS = ("random", "llr", "nn", "sann", "cnn", "sacnn")


def register(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo", help="Kashmir end to end: store, features, training, maps, report",
        description="Run the whole pipeline on the real Kashmir data: prepare the store, "
                    "compute aligned features, train llr, cnn and sacnn (quick preset), "
                    "predict the maps, evaluate them against scikit-learn peers.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--full", action="store_true",
                   help="all six models (random, llr, nn, sann, cnn, sacnn)")
    p.add_argument("--preset", default="quick", choices=("quick", "paper"),
                   help="training recipe (default quick)")
    p.add_argument("--band", type=int, default=1, help="test band of the band split (default 1)")
    p.add_argument("--seed", type=int, default=0,
                   help="training seed (weights, shuffles); the split's draws keep seed 0")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="override the preset's epochs (a smoke run: the models are then not "
                        "the preset's)")
    p.add_argument("--no-peers", action="store_true", help="skip the scikit-learn peers")
    p.add_argument("--fresh", action="store_true",
                   help="delete the store, models and report in OUT first")
    from geoslide.parallel.devices import add_device_argument

    add_device_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


def _store(out: Path, quiet: bool) -> Path:
    from geoslide.prepare.datasets import load
    from geoslide.errors import GeoslideError
    from geoslide.store import open_zarr, to_zarr

    path = out / "kashmir.zarr"
    if path.exists():
        try:
            # variables an interrupted run left unfinished are finished below (they resume)
            open_zarr(path, allow_incomplete=True)
            _say(quiet, f"[1/5] store {path} exists: reused")
            return path
        except GeoslideError as exc:
            _say(quiet, f"[1/5] store {path} is unusable ({exc}): rebuilt")
    to_zarr(load("kashmir"), path, mode="w", progress=not quiet)
    _say(quiet, f"[1/5] prepared {path}")
    return path


def _features(store: Path, quiet: bool) -> None:
    from geoslide.features.align import aligned_features
    from geoslide.names import is_aligned
    from geoslide.store import incomplete, open_zarr, write_variables
    from geoslide.store.winners import represented_names

    ds = open_zarr(store, allow_incomplete=True)
    todo = [v for v in incomplete(store) if is_aligned(v)]
    if not todo and any(is_aligned(str(v)) for v in ds.data_vars):
        _say(quiet, "[2/5] aligned features already in the store: reused")
        return
    t0 = time.perf_counter()
    extra = aligned_features(ds, gathered=False)
    write_variables(extra, store, progress=not quiet)  # an interrupted run (demo or CLI) resumes
    _say(quiet, f"[2/5] aligned features: {len(represented_names(extra))} variables "
                f"({time.perf_counter() - t0:.0f} s)")


def _reusable(path: Path, preset: str, band: int, seed: int, epochs: int | None) -> Any:
    """The model file at ``path`` when it was trained with this recipe, else None."""
    from geoslide.errors import GeoslideError
    from geoslide.learn.modelfile import load_model

    try:
        model = load_model(path) if path.exists() else None
    except GeoslideError:
        return None
    if model is not None and model.trained_as(preset=preset, split="band", band=band,
                                              seed=seed, epochs=epochs):
        return model
    return None


LONGEST_FIRST = ("cnn", "sacnn", "sann", "nn", "peers", "llr", "random")
"""The order the demo hands out its jobs (its models' trainings and the peers' fits)."""


def _train_job(store: str, name: str, path: str, args: dict[str, Any]) -> dict[str, Any]:
    """Train one demo model on one thread into ``path``; its best epoch, NLL and seconds."""
    from geoslide.learn.train import train
    from geoslide.store import open_zarr

    t0 = time.perf_counter()
    result = train(open_zarr(store).load(), name, split="band", progress=False, out=path,
                   threads=1, **args)
    return {"best_epoch": result.best_epoch, "best_val_nll": result.best_val_nll,
            "s": round(time.perf_counter() - t0, 2)}


def _peers_job(store: str, split: Any) -> Any:
    """The scikit-learn peers fitted and mapped on one thread (``evaluate(peers=...)``)."""
    from geoslide.evaluation.evaluate import fit_peers
    from geoslide.evaluation.peers import PEERS
    from geoslide.store import open_zarr

    one = {p: {"n_jobs": 1} for p in PEERS if p.startswith("rf")}
    return fit_peers(open_zarr(store).load(), True, split=split, peer_kwargs=one)


def _train_all(store: Path, out: Path, args: argparse.Namespace,
               clock: Any) -> tuple[dict[str, Any], Any]:
    """The demo's models (trained, or reused when their file has the same recipe) and the
    fitted peers (None without them), side by side, each on one thread."""
    from tqdm.auto import tqdm

    from geoslide.learn.modelfile import load_model
    from geoslide.learn.train import training_split
    from geoslide.parallel.devices import resolve_device
    from geoslide.parallel.sidebyside import side_by_side, worker_count

    names = ALL_MODELS if args.full else QUICK_MODELS
    recipe = {"preset": args.preset, "band": args.band, "seed": args.seed, "epochs": args.epochs}
    jobs: dict[str, Any] = {}
    reused: dict[str, Any] = {}
    for name in names:
        path = out / "models" / f"{name}.pt"
        reused[name] = _reusable(path, args.preset, args.band, args.seed, args.epochs)
        if reused[name] is not None:
            _say(args.quiet, f"[3/5] {name}: reused {path}")
        else:
            jobs[name] = (_train_job, (str(store), name, str(path),
                                       {**recipe, "device": args.device}))
    if not args.no_peers:
        split = training_split(names[0], args.preset, band=args.band)
        jobs["peers"] = (_peers_job, (str(store), split))
    order = sorted(jobs, key=LONGEST_FIRST.index)
    accelerator = resolve_device(args.device).type != "cpu"  # one process drives it
    workers = 1 if accelerator else worker_count(len(order))
    peers = None
    bar = tqdm(total=len(order), disable=args.quiet or not order, unit="job",
               desc=f"[3/5] {', '.join(order)} in {workers} process(es), one thread each")
    for i, got in side_by_side([jobs[k] for k in order], workers):
        if order[i] == "peers":
            peers = got
            clock.job("fit and map the peers", round(sum(got.seconds.values()), 2))
            bar.write(f"[3/5] peers fitted and mapped: {', '.join(got.models)}")
        else:
            clock.job(f"train {order[i]}", got["s"])
            bar.write(f"[3/5] trained {order[i]} in {got['s']:.0f} s: best epoch "
                      f"{got['best_epoch']}, validation NLL {got['best_val_nll']:.4f}")
        bar.update(1)
    bar.close()
    clock.lap("training and peers")
    return {n: load_model(out / "models" / f"{n}.pt") if reused[n] is None else reused[n]
            for n in names}, peers


def _maps(ds: Any, store: Path, models: dict[str, Any], args: argparse.Namespace,
          clock: Any) -> None:
    """Each model's map into the store (an unfinished one resumes; a finished one is kept)."""
    from geoslide.evaluation.evaluate import stored_map
    from geoslide.maps.predict import predict
    from geoslide.store import write_variables

    for name, model in models.items():
        var = f"susceptibility_{name}"
        if stored_map(ds, model) is not None and var in ds:
            continue  # (an unfinished map is not in ds: open_zarr leaves it out)
        probs = predict(ds, model, progress=not args.quiet, device=args.device, name=var)
        write_variables(probs.to_dataset(name=var), store, progress=False)
        clock.lap(f"map {name}")


def chosen_model(models: dict[str, Any]) -> str:
    """The model whose map the demo exports: the lowest validation NLL (as `compare`
    chooses), the chance baseline aside."""
    trained = {k: m for k, m in models.items() if k != "random"}
    return min(trained, key=lambda k: float(trained[k].train.get("best_val_nll", np.inf)))


class _Clock:
    """Wall seconds per step of the demo and of each job run side by side, written to
    OUT/timings.json."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.last = self.start
        self.steps: dict[str, float] = {}
        self.jobs: dict[str, float] = {}  # seconds of the jobs run side by side

    def job(self, name: str, seconds: float) -> None:
        """Record a side-by-side job's own seconds."""
        self.jobs[name] = seconds

    def lap(self, step: str) -> None:
        now = time.perf_counter()
        self.steps[step] = round(self.steps.get(step, 0.0) + now - self.last, 2)
        self.last = now

    def write(self, out: Path, args: argparse.Namespace) -> None:
        import json

        from geoslide.store.files import write_file

        data = {"steps_s": self.steps, "jobs_s": self.jobs,
                "wall_s": round(time.perf_counter() - self.start, 2),
                "models": ALL_MODELS if args.full else QUICK_MODELS, "preset": args.preset,
                "peers": not args.no_peers, "epochs": args.epochs}
        write_file(out / "timings.json", json.dumps(data, indent=1).encode())


def run(args: argparse.Namespace) -> int:
    import rioxarray  # noqa: F401  (the .rio accessor on opened stores)

    from geoslide.evaluation.evaluate import evaluate
    from geoslide.evaluation.report import write_report
    from geoslide.evaluation.verdict import evaluation_verdict
    from geoslide.io import to_geotiff
    from geoslide.store import open_zarr

    clock = _Clock()
    out = Path(args.out)
    if args.fresh:
        for name in ("kashmir.zarr", "models", "report"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    store = _store(out, args.quiet)
    clock.lap("prepare")
    _features(store, args.quiet)
    clock.lap("aligned features")
    models, peers = _train_all(store, out, args, clock)
    _maps(open_zarr(store).load(), store, models, args, clock)
    ds = open_zarr(store).load()
    chosen = chosen_model(models)
    tif = to_geotiff(ds[f"susceptibility_{chosen}"], out / f"susceptibility_{chosen}.tif")
    _say(args.quiet, f"[4/5] maps written into {store} and {tif}")
    clock.lap("GeoTIFF")
    ev = evaluate(ds, list(models.values()), split="band", band=args.band,
                  peers=False if peers is None else peers, progress=not args.quiet,
                  device=args.device, reference=chosen)
    clock.lap("evaluation (models and peers)")
    said = evaluation_verdict(ev, chosen, f"the lowest validation NLL of the models trained, "
                                          f"exported as {tif.name}")
    files = write_report(ev, out / "report", ds=ds, verdict=said)
    clock.lap("report and figures")
    clock.write(out, args)
    print(f"[5/5] evaluation on the test rows (band {args.band}):\n\n{ev.table()}\n")
    print("\n".join(said))
    print(f"\nreport:  {files['report']}\nmetrics: {files['metrics']}\nstore:   {store}\n"
          f"models:  {out / 'models'}\nGeoTIFF: {tif}\ntimings: {out / 'timings.json'}\n"
          f"demo wall time: {(time.perf_counter() - clock.start) / 60:.1f} min")
    sys.stdout.flush()
    return 0
