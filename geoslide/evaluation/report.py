"""The evaluation report: ``report.md``, ``metrics.json`` and the figures in one folder.

Every file is written to a temporary name and renamed into place, so an interrupted run never
leaves a half-written file (re-running overwrites the folder's report files; other files in
the folder are left alone).
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Sequence, TYPE_CHECKING

import numpy as np

from geoslide.evaluation.tables import (classes_table, differences_table, fmt,
                                        headline_table, importance_table, spread_table, table2)
from geoslide.store import urls
from geoslide.store.attrs import jsonable
from geoslide.store.files import write_file

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from geoslide.evaluation.scores import Evaluation

FIGURES = {
    "roc": "roc.png",
    "pr": "precision_recall.png",
    "reliability": "reliability.png",
    "rates": "success_prediction_rate.png",
    "classes": "susceptibility_classes.png",
    "validation": "validation_nll.png",
    "importance": "importance.png",
}


def _headline(ev: "Evaluation") -> list[str]:
    """The report's first section: what a geologist reads first, and the cautions."""
    lines = ["## How well each map finds the landslides", "",
             "AUC: the chance that a test landslide pixel is rated above a stable test pixel "
             "(0.5: no better than chance, 1: perfect), with its 95% interval. Top 10 % / 20 %: "
             "the share of the landslide pixels that fall in the 10 % / 20 % of the area the "
             "map rates most susceptible (a map no better than chance puts 10 % / 20 % there); "
             "on the test pixels it is the prediction rate (landslides the map never saw), on "
             "the training pixels the success rate (how well it fits what it saw).", "",
             headline_table(ev), ""]
    for w in ev.warnings:
        lines += [f"**Caution**: {w}.", ""]
    return lines


def run_header(command: str) -> dict[str, str | None]:
    """What a results file opens with (docs/results): the ``command`` that wrote it, the date
    (UTC), the git commit of the checkout it ran from (None outside one) and :func:`machine`."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    except OSError:
        commit = ""
    return {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": commit or None, "machine": machine()}


def machine() -> str:
    """One line naming the machine and library versions (for reproduction pages)."""
    import torch

    return (f"{platform.platform()}, {os.cpu_count()} CPU cores, Python "
            f"{platform.python_version()}, torch {torch.__version__}"
            + (f", CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))


def _split_text(ev: "Evaluation") -> str:
    s = ev.split
    if s.get("kind") == "band":
        n = s.get("n_bands", 5)
        b = s.get("band", 1)
        h = ev.dataset["shape"][0]
        what = (f"band split: test = rows [{b * h // n}, {(b + 1) * h // n}) = "
                f"[{b}H/{n}, {b + 1}H/{n}) (band {b} of {n})")
    elif s.get("kind") == "paper":
        what = "the paper's split: core windows shuffled, 80% train / 10% validation / 10% test"
    elif s.get("kind") == "none":
        what = "no split: every labelled pixel is a test pixel (a region the models never saw)"
    elif s.get("kind") == "kfold":
        what = f"spatial k-fold: fold {s.get('fold', 0)} of {s.get('n_folds', 5)}"
    else:
        what = "custom masks"
    extra = ", ".join(f"{k}={v}" for k, v in s.items() if k != "kind")
    return f"{what} ({extra})" if extra else what


def _preamble(ev: "Evaluation", title: str) -> list[str]:
    """Title, machine, grid, split, and what each set holds (pixels, landslides, blocks)."""
    d = ev.dataset
    lines = [
        f"# {title}",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
        "",
        f"Grid {d['shape'][0]} x {d['shape'][1]} px"
        + (f", {d['resolution']:.2f} m pixels" if d.get("resolution") else "")
        + (f", {d['crs']}" if d.get("crs") else "") + ".",
        f"Split: {_split_text(ev)}.",
        "",
        "| set | pixels | labelled | landslide pixels | scored (finite in every map) | "
        f"landslide share (scored) | blocks of {d.get('block', '?')} px (scored) |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, v in d["sets"].items():
        n, pos = v.get("scored", v["labelled"]), v.get("scored_landslides", v["landslides"])
        share = pos / n if n else float("nan")
        lines.append(f"| {k} | {v['pixels']} | {v['labelled']} | {v['landslides']} | {n} | "
                     f"{fmt(share, 4)} | {v.get('blocks', '–')} |")
    return lines + [""]


def _nll_section(ev: "Evaluation") -> list[str]:
    """The Table-2-like table, the differences to the reference, the split-mismatch flags."""
    n_bins, n_boot = ev.scoring.get("n_bins", 10), ev.scoring.get("n_boot")
    boot = (f"95% intervals from {n_boot} replicates of a bootstrap" if n_boot else
            "95% intervals (when computed) from a bootstrap")
    lines = [
        "## Negative log-likelihood and AUC (cf. the paper's Table 2)",
        "",
        "NLL in nats per pixel over every labelled pixel of the set (lower is better); AUC, "
        "average precision (AP), Brier score and expected calibration error (ECE, "
        f"{n_bins} equal-count bins) on the test pixels; prediction-rate AUC = area under the "
        "share of test landslides captured against the share of test area, most susceptible "
        f"first. Brackets: {boot} over spatial blocks of the test set (the split's windows), "
        "not over pixels, since neighbouring pixels are not independent.",
        "",
        table2(ev),
        "",
    ]
    dt = differences_table(ev)
    if dt:
        lines += [dt, ""]
    mism = [r.get("label", n) for n, r in ev.results.items() if r.get("split_mismatch")]
    if mism:
        lines += [f"⚠ {', '.join(mism)}: trained on another split than the one evaluated here; "
                  "their test pixels may have been training pixels.", ""]
    return lines + _peers_note(ev)


def _peers_note(ev: "Evaluation") -> list[str]:
    peers = [r for r in ev.results.values() if r.get("kind") == "peer"]
    if not peers:
        return []
    info = peers[0].get("info", {})
    sub = any(p.get("info", {}).get("subsampled") for p in peers)
    return [
        "Peers (scikit-learn) are fitted per pixel on the labelled pixels of the train set"
        + (" (subsampled uniformly, class shares kept, no correction needed)" if sub else
           " (all of them)")
        + f" — e.g. {info.get('train_pixels', '?')} pixels — and evaluated on every "
        "labelled test pixel; inputs: the continuous variables and one-hot classes, "
        "'+ aligned' adds the aligned slope and elevation at every looking distance. "
        "See geoslide.evaluation.peers for their settings.",
        "",
    ]


def _more_sections(ev: "Evaluation") -> list[str]:
    """Importance, ensemble spread and susceptibility classes, each when it has rows."""
    lines: list[str] = []
    it = importance_table(ev)
    if it:
        lines += ["## Which factors drive the map", "",
                  "Permutation importance: the increase in test NLL (and the decrease in AUC) "
                  "when one input group is shuffled jointly over the test pixels (each "
                  "continuous variable, each class raster's one-hot group, the aligned features "
                  "of each distance); mean over the repeats with a 95% interval "
                  "(geoslide.explain). A group near 0 is one the map does not rely on.", "",
                  it, ""]
    st = spread_table(ev)
    if st:
        lines += ["## Where the ensemble members disagree", "",
                  "Spread: the standard deviation of the seed members' probabilities at each "
                  "scored test pixel (0: they agree). It shows where the map depends on the "
                  "training seed rather than on the data; the members share the data, so it "
                  "is a lower bound of the map's uncertainty.", "", st, ""]
    ct = classes_table(ev)
    if ct:
        lines += ["## Susceptibility classes", "",
                  f"Each map's test pixels split in {ev.scoring.get('n_classes', 5)} classes of "
                  "equal area by quantiles; share of test landslide pixels per class, and "
                  "frequency ratio FR = landslide share / area share (1 = no better than "
                  "chance).", "", ct, ""]
    return lines


def markdown(ev: "Evaluation", figures: dict[str, str], title: str = "geoslide evaluation",
             verdict: Sequence[str] = ()) -> str:
    """The text of report.md: the sets, the verdict when given, the headline (AUC, landslides
    in the top 10 % / 20 % of the area, cautions), the NLL table, then importance, spread,
    classes and figures."""
    said = ["## Verdict", "", *[f"- {v}" for v in verdict], ""] if verdict else []
    lines = (_preamble(ev, title) + said + _headline(ev) + _nll_section(ev)
             + _more_sections(ev))
    if figures:
        lines += ["## Figures", ""]
        for key, rel in figures.items():
            lines += [f"![{key}]({rel})", ""]
    return "\n".join(lines)


def _write_text(path: Path | str, text: str) -> None:
    """Write ``text`` whole or not at all (:func:`geoslide.store.files.write_file`)."""
    write_file(path, text.encode(), what="the report", option="another --out")


def _curve_figures(ev: "Evaluation", out: Path | str) -> dict[str, str]:
    """ROC, precision-recall, reliability, rate curves, classes, importance, validation NLL."""
    from geoslide.evaluation import plots

    figs: dict[str, str] = {}
    res = {r.get("label", n): r for n, r in ev.results.items()}
    if res:
        figs["ROC curves"] = urls.name(plots.roc_curves(res, urls.join(out, FIGURES["roc"])))
        figs["precision-recall"] = urls.name(plots.pr_curves(res, urls.join(out, FIGURES["pr"])))
        figs["reliability diagram"] = urls.name(plots.reliability_diagram(
            res, urls.join(out, FIGURES["reliability"])))
        figs["success- and prediction-rate curves"] = urls.name(plots.rate_curves(
            res, urls.join(out, FIGURES["rates"])))
        figs["susceptibility classes"] = urls.name(plots.class_shares(
            res, urls.join(out, FIGURES["classes"])))
        if any(r.get("importance") for r in res.values()):
            figs["permutation importance"] = urls.name(plots.importance_bars(
                res, urls.join(out, FIGURES["importance"])))
    if ev.histories:
        hist = {ev.results.get(n, {}).get("label", n): h for n, h in ev.histories.items()}
        figs["validation NLL per epoch"] = urls.name(plots.validation_curves(
            hist, urls.join(out, FIGURES["validation"])))
    return figs


def _map_figures(ev: "Evaluation", out: Path | str, ds: "xr.Dataset",
                 labels: np.ndarray | None) -> dict[str, str]:
    """Each map over the inventory, and each ensemble's spread."""
    from geoslide.evaluation import plots
    from geoslide.evaluation.maps_plot import report_map

    if labels is None:
        from geoslide.learn.inputs import to_label_array

        labels = to_label_array(ds)
    x = np.asarray(ds["x"].values) if "x" in ds.coords else None
    y = np.asarray(ds["y"].values) if "y" in ds.coords else None
    figs: dict[str, str] = {}
    for name, prob in ev.maps.items():
        label = ev.results.get(name, {}).get("label", name)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
        path = report_map(ds, prob, urls.join(out, f"map_{safe}.png"), labels=labels,
                          title=f"{label} susceptibility", test_mask=ev.masks.get("test"))
        figs[f"{label} map and inventory"] = urls.name(path)
        if name in ev.spreads:
            k = (ev.results.get(name, {}).get("spread") or {}).get("members", "the")
            figs[f"{label} ensemble spread"] = urls.name(plots.spread_map(
                ev.spreads[name], labels, urls.join(out, f"spread_{safe}.png"), x=x, y=y,
                title=f"{label}: spread of {k} seed members", test_mask=ev.masks.get("test")
            ))
    return figs


def write_report(ev: "Evaluation", out: str | os.PathLike, *, ds: "xr.Dataset | None" = None,
                 labels: np.ndarray | None = None, map_figures: bool = True,
                 title: str = "geoslide evaluation",
                 verdict: Sequence[str] = ()) -> dict[str, str]:
    """Write report.md, metrics.json and the figures of ``ev`` (from
    :func:`geoslide.evaluation.evaluate.evaluate`) into ``out``; the map figures need ``ds``
    (``labels``: its label array, when the caller has it). Returns {what: path} of every file
    written (also under ``files`` in metrics.json); ``ev`` is left as it was. ``verdict``:
    sentences opening the report (and ``verdict`` in metrics.json)."""
    out = urls.parse(out)  # a folder, or a URL prefix (s3://...)
    if isinstance(out, Path):
        out.mkdir(parents=True, exist_ok=True)
    figs = _curve_figures(ev, out)
    if map_figures and ds is not None and ev.maps:
        figs.update(_map_figures(ev, out, ds, labels))
    files = {k: str(urls.join(out, v)) for k, v in figs.items()}
    files.update(report=str(urls.join(out, "report.md")),
                 metrics=str(urls.join(out, "metrics.json")))
    data = {**ev.to_json(files), **({"verdict": list(verdict)} if verdict else {})}
    _write_text(urls.join(out, "metrics.json"), json.dumps(jsonable(data), indent=1))
    _write_text(urls.join(out, "report.md"), markdown(ev, figs, title=title, verdict=verdict))
    return files


__all__ = ["write_report", "markdown", "machine", "run_header", "FIGURES", "table2", "headline_table",
           "differences_table", "importance_table", "classes_table", "spread_table"]
