"""The evaluation report: ``report.md``, ``metrics.json`` and the figures in one folder.

Every file is written to a temporary name and renamed into place, so an interrupted run never
leaves a half-written file (re-running overwrites the folder's report files; other files in
the folder are left alone).
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoslide.store.attrs import jsonable

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr

    from geoslide.evaluation.evaluate import Evaluation

FIGURES = {
    "roc": "roc.png",
    "pr": "precision_recall.png",
    "reliability": "reliability.png",
    "rates": "success_prediction_rate.png",
    "classes": "susceptibility_classes.png",
    "validation": "validation_nll.png",
    "importance": "importance.png",
}


def _fmt(v: Any, digits: int = 4, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:{'+' if sign else ''}.{digits}f}"


def _ci(r: dict, key: str, digits: int) -> str:
    iv = (r.get("intervals") or {}).get(key)
    return f" [{_fmt(iv[0], digits)}, {_fmt(iv[1], digits)}]" if iv else ""


def table2(ev: "Evaluation") -> str:
    """Markdown table like the paper's Table 2 (plus AUC, AP, Brier, ECE, prediction-rate
    AUC), models first, then peers, then the reference baselines; test NLL and AUC with
    their 95% block-bootstrap intervals."""
    head = ("| method | test NLL [95% CI] | train NLL | test AUC [95% CI] | test AP | Brier | "
            "ECE | pred.-rate AUC |\n|---|---|---|---|---|---|---|---|")
    rows = []
    for kind in ("model", "peer"):
        for name, r in ev.results.items():
            if r.get("kind") != kind:
                continue
            flag = " ⚠ other split" if r.get("split_mismatch") else ""
            rows.append(f"| {r.get('label', name)}{flag} | {_fmt(r['nll'])}{_ci(r, 'nll', 4)} | "
                        f"{_fmt(r.get('train_nll'))} | {_fmt(r.get('auc'), 3)}{_ci(r, 'auc', 3)} | "
                        f"{_fmt(r.get('average_precision'), 3)} | {_fmt(r.get('brier'), 5)} | "
                        f"{_fmt(r.get('ece'), 4)} | {_fmt(r.get('rate_auc'), 3)} |")
    rnd, base = ev.baselines["random_expected"], ev.baselines["base_rate"]
    rows.append(f"| Random (expected, paper §5.1) | {_fmt(rnd['test_nll'])} | "
                f"{_fmt(rnd['train_nll'])} | 0.500 | – | – | – | 0.500 |")
    rows.append(f"| Base rate (constant {base['probability']:.4f}) | {_fmt(base['test_nll'])} | "
                f"{_fmt(base['train_nll'])} | 0.500 | – | – | – | 0.500 |")
    return head + "\n" + "\n".join(rows)


def differences_table(ev: "Evaluation") -> str:
    """Each map's test NLL and AUC minus the reference's (default the best peer), with 95%
    intervals (same bootstrap replicates for both maps); empty without it or intervals."""
    best = ev.dataset.get("reference")
    rows = []
    for name, r in ev.results.items():
        iv = r.get("intervals") or {}
        if name == best or "nll_diff" not in iv:
            continue
        (dn, ln, hn), (da, la, ha) = iv["nll_diff"], iv["auc_diff"]
        rows.append(f"| {r.get('label', name)} | {_fmt(dn, 4, True)} [{_fmt(ln, 4, True)}, "
                    f"{_fmt(hn, 4, True)}] | "
                    f"{_fmt(da, 3, True)} [{_fmt(la, 3, True)}, {_fmt(ha, 3, True)}] |")
    if not rows:
        return ""
    label = ev.results[best].get("label", best)
    what = (f"the best peer ({label}, lowest test NLL)"
            if best == ev.dataset.get("best_peer") else label)
    return (f"Difference to {what}: negative NLL and positive "
            "AUC differences favour the method; an interval that excludes 0 is a difference "
            "the test pixels support.\n\n| method | Δ test NLL [95% CI] | Δ test AUC [95% CI] "
            "|\n|---|---|---|\n" + "\n".join(rows))


def importance_table(ev: "Evaluation") -> str:
    """One row per input group, one column per map: Δ test NLL [95% interval]."""
    named = [(r.get("label", n), r["importance"]) for n, r in ev.results.items()
             if r.get("importance")]
    if not named:
        return ""
    groups: list[str] = []
    for _, imp in named:
        groups += [g["group"] for g in imp["groups"] if g["group"] not in groups]
    head = ("| input group | " + " | ".join(label for label, _ in named) + " |\n|---|"
            + "---|" * len(named))
    rows = []
    for g in groups:
        cells = []
        for _, imp in named:
            r = next((x for x in imp["groups"] if x["group"] == g), None)
            cells.append("–" if r is None else
                         f"{_fmt(r['nll'], 4, True)} [{_fmt(r['nll_low'], 4, True)}, "
                         f"{_fmt(r['nll_high'], 4, True)}]")
        rows.append(f"| {g} | " + " | ".join(cells) + " |")
    return head + "\n" + "\n".join(rows)


def spread_table(ev: "Evaluation") -> str:
    """One row per seed ensemble: members, scored test pixels, the mean and 95th percentile
    of its spread, and its mean on landslide vs stable test pixels; empty without one."""
    rows = [f"| {r.get('label', n)} | {s['members']} | {s['pixels']} | "
            f"{_fmt(s['mean_std'], 5)} | {_fmt(s['p95_std'], 5)} | "
            f"{_fmt(s['mean_std_landslide'], 5)} | {_fmt(s['mean_std_stable'], 5)} |"
            for n, r in ev.results.items() if (s := r.get("spread"))]
    if not rows:
        return ""
    return ("| method | members | test pixels | mean spread | 95th percentile | mean spread, "
            "landslide px | mean spread, stable px |\n|---|---|---|---|---|---|---|\n"
            + "\n".join(rows))


def classes_table(ev: "Evaluation") -> str:
    """Share of test landslides per susceptibility class (quantile classes of the test area),
    with its frequency ratio; '–' for a class with no area."""
    named = [(r.get("label", n), r["classes"]) for n, r in ev.results.items() if r.get("classes")]
    if not named:
        return ""
    names = [c["class"] for c in named[0][1]]
    head = "| method | " + " | ".join(names) + " |\n|---|" + "---|" * len(names)

    def cell(c: dict[str, Any]) -> str:  # '–' for a class with no area (no frequency ratio)
        fr = c.get("frequency_ratio")
        if not c.get("area_share") or fr is None or not math.isfinite(fr):
            return "–"
        return f"{c['landslide_share']:.1%} (FR {fr:.2f})"

    rows = [f"| {label} | " + " | ".join(cell(c) for c in classes) + " |"
            for label, classes in named]
    return head + "\n" + "\n".join(rows)


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


def markdown(ev: "Evaluation", figures: dict[str, str], title: str = "geoslide evaluation") -> str:
    """The text of report.md."""
    d = ev.dataset
    sets = d["sets"]
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
        "landslide share (scored) |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in sets.items():
        n, pos = v.get("scored", v["labelled"]), v.get("scored_landslides", v["landslides"])
        share = pos / n if n else float("nan")
        lines.append(f"| {k} | {v['pixels']} | {v['labelled']} | {v['landslides']} | {n} | "
                     f"{_fmt(share, 4)} |")
    lines += [
        "",
        "## Negative log-likelihood and AUC (cf. the paper's Table 2)",
        "",
        "NLL in nats per pixel over every labelled pixel of the set (lower is better); AUC, "
        "average precision (AP), Brier score and expected calibration error (ECE, 10 "
        "equal-count bins) on the test pixels; prediction-rate AUC = area under the share of "
        "test landslides captured against the share of test area, most susceptible first. "
        "Brackets: 95% intervals from a bootstrap over spatial blocks of the test set (the "
        "split's windows), not over pixels, since neighbouring pixels are not independent.",
        "",
        table2(ev),
        "",
    ]
    for w in d.get("warnings", []):
        lines += [f"⚠ {w}.", ""]
    dt = differences_table(ev)
    if dt:
        lines += [dt, ""]
    mism = [r.get("label", n) for n, r in ev.results.items() if r.get("split_mismatch")]
    if mism:
        lines += [f"⚠ {', '.join(mism)}: trained on another split than the one evaluated here; "
                  "their test pixels may have been training pixels.", ""]
    peers = [r for r in ev.results.values() if r.get("kind") == "peer"]
    if peers:
        info = peers[0].get("info", {})
        sub = any(p.get("info", {}).get("subsampled") for p in peers)
        lines += [
            "Peers (scikit-learn) are fitted per pixel on the labelled pixels of the train set"
            + (" (subsampled uniformly, class shares kept, no correction needed)" if sub else
               " (all of them)")
            + f" — e.g. {info.get('train_pixels', '?')} pixels — and evaluated on every "
            "labelled test pixel; inputs: the continuous variables and one-hot classes, "
            "'+ aligned' adds the aligned slope and elevation at every looking distance. "
            "See geoslide.evaluation.peers for their settings.",
            "",
        ]
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
                  "Each map's test pixels split in 5 classes of equal area by quantiles; share "
                  "of test landslide pixels per class, and frequency ratio FR = landslide share "
                  "/ area share (1 = no better than chance).", "", ct, ""]
    if figures:
        lines += ["## Figures", ""]
        for key, rel in figures.items():
            lines.append(f"![{key}]({rel})")
            lines.append("")
    return "\n".join(lines)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(ev: "Evaluation", out: str | os.PathLike, *, ds: "xr.Dataset | None" = None,
                 labels: np.ndarray | None = None, map_figures: bool = True,
                 title: str = "geoslide evaluation") -> dict[str, str]:
    """Write report.md, metrics.json and the figures into ``out``; returns {what: path}."""
    from geoslide.evaluation import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figs: dict[str, str] = {}
    res = {r.get("label", n): r for n, r in ev.results.items()}
    if res:
        figs["ROC curves"] = plots.roc_curves(res, out / FIGURES["roc"]).name
        figs["precision-recall"] = plots.pr_curves(res, out / FIGURES["pr"]).name
        figs["reliability diagram"] = plots.reliability_diagram(
            res, out / FIGURES["reliability"]).name
        figs["success- and prediction-rate curves"] = plots.rate_curves(
            res, out / FIGURES["rates"]).name
        figs["susceptibility classes"] = plots.class_shares(res, out / FIGURES["classes"]).name
        if any(r.get("importance") for r in res.values()):
            figs["permutation importance"] = plots.importance_bars(
                res, out / FIGURES["importance"]).name
    if ev.histories:
        hist = {ev.results.get(n, {}).get("label", n): h for n, h in ev.histories.items()}
        figs["validation NLL per epoch"] = plots.validation_curves(
            hist, out / FIGURES["validation"]).name
    if map_figures and ds is not None and ev.maps:
        from geoslide.evaluation.maps_plot import report_map

        if labels is None:
            from geoslide.learn.inputs import to_label_array

            labels = to_label_array(ds)
        x = np.asarray(ds["x"].values) if "x" in ds.coords else None
        y = np.asarray(ds["y"].values) if "y" in ds.coords else None
        for name, prob in ev.maps.items():
            label = ev.results.get(name, {}).get("label", name)
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
            path = report_map(ds, prob, out / f"map_{safe}.png", labels=labels,
                              title=f"{label} susceptibility", test_mask=ev.masks.get("test"))
            figs[f"{label} map and inventory"] = path.name
            if name in ev.spreads:
                k = (ev.results.get(name, {}).get("spread") or {}).get("members", "the")
                figs[f"{label} ensemble spread"] = plots.spread_map(
                    ev.spreads[name], labels, out / f"spread_{safe}.png", x=x, y=y,
                    title=f"{label}: spread of {k} seed members", test_mask=ev.masks.get("test")
                ).name
    ev.files = {k: str(out / v) for k, v in figs.items()}
    _atomic_text(out / "metrics.json", json.dumps(jsonable(ev.to_json()), indent=1))
    _atomic_text(out / "report.md", markdown(ev, figs, title=title))
    ev.files["report"] = str(out / "report.md")
    ev.files["metrics"] = str(out / "metrics.json")
    return dict(ev.files)


__all__ = ["write_report", "table2", "classes_table", "spread_table", "markdown", "machine", "FIGURES"]
