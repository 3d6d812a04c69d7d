"""A comparison's report: ``compare.md`` (the verdict first, then the ranking with intervals,
the per-fold table, the classes of the map), ``compare.json`` (every figure) and
``compare_auc.png`` (pooled out-of-fold AUC of each candidate with its interval)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from geoslide.evaluation.compare import Comparison
from geoslide.evaluation.tables import fmt
from geoslide.evaluation.verdict import label


def ranking_table(cmp: Comparison) -> str:
    """Markdown: one row per ranked candidate (pooled out-of-fold scores)."""
    rows = ["| rank | model | AUC [95 %] | landslides in top 10 % / 20 % of area | NLL [95 %] "
            "| validation NLL | AUC − chosen [95 %] |", "|---|---|---|---|---|---|---|"]
    for i, m in enumerate(cmp.ranking, start=1):
        s = cmp.scores[m]
        d = s.get("auc_diff")
        diff = "chosen" if m == cmp.chosen else (
            f"{fmt(d[0], 3, sign=True)} [{fmt(d[1], 3, sign=True)}, {fmt(d[2], 3, sign=True)}]")
        rows.append(f"| {i} | {m} | {fmt(s['auc'], 3)} [{fmt(s['auc_ci'][0], 3)}, "
                    f"{fmt(s['auc_ci'][1], 3)}] | {s['top10']:.0%} / {s['top20']:.0%} | "
                    f"{fmt(s['nll'], 4)} [{fmt(s['nll_ci'][0], 4)}, {fmt(s['nll_ci'][1], 4)}] | "
                    f"{fmt(s['val_nll'], 4)} | {diff} |")
    return "\n".join(rows)


def folds_table(cmp: Comparison) -> str:
    """Markdown: every candidate's folds (test AUC and NLL, or why it failed)."""
    rows = ["| model | fold | status | test AUC | test NLL | base-rate NLL | val NLL | s |",
            "|---|---|---|---|---|---|---|---|"]
    for r in cmp.records:
        t = r.test
        rows.append(f"| {r.model} | {r.fold} | {r.status if r.ok else 'failed: ' + r.reason.splitlines()[0][:80]} | "
                    f"{fmt(t.get('auc'), 3)} | {fmt(t.get('nll'), 4)} | "
                    f"{fmt(t.get('base_rate_nll'), 4)} | {fmt(r.val_nll, 4)} | {r.seconds:.0f} |")
    return "\n".join(rows)


def classes_table(table: list[dict[str, Any]]) -> str:
    rows = ["| class | probability | area km² | area share | landslide share | density | "
            "frequency ratio |", "|---|---|---|---|---|---|---|"]
    for c in table:
        rows.append(f"| {c['class']} {c['name']} | {c['p_min']:.3g}–{c['p_max']:.3g} | "
                    f"{c['area_km2']:.2f} | {c['area_share']:.1%} | {c['landslide_share']:.1%}"
                    f" | {fmt(c['density'], 4)} | {fmt(c['frequency_ratio'], 2)} |")
    return "\n".join(rows)


def markdown(cmp: Comparison, classes: list[dict[str, Any]] | None = None,
             files: dict[str, str] | None = None) -> str:
    s = cmp.settings
    parts = ["# Which map to trust for this region", "", *[f"- {v}" for v in cmp.verdict], "",
             f"Spatial {s['n_folds']}-fold cross-validation on {s['split_core']} px blocks "
             f"({s['blocks']} labelled blocks), a {s['buffer_px']} px gap between training and "
             "test blocks; the choice on validation pixels only (lowest pooled validation NLL);"
             " every score below on out-of-fold test pixels, read once. AUC: the chance that a "
             "landslide pixel is rated above a stable one (0.5: no skill). Intervals: 95 % "
             "block bootstrap.", "", "## Ranking (pooled out-of-fold)", "", ranking_table(cmp),
             "", "![pooled AUC](compare_auc.png)", ""]
    if classes:
        parts += ["## Classes of the map", "", classes_table(classes), ""]
    parts += ["## Every fold", "", folds_table(cmp), ""]
    if files:
        parts += ["## Files", "", *[f"- {k}: `{v}`" for k, v in files.items()], ""]
    return "\n".join(parts)


def auc_figure(cmp: Comparison, path: Path) -> None:
    """Dot-and-whisker plot of each ranked candidate's pooled AUC and interval (a figure
    apart from pyplot: the caller's backend is left as it is)."""
    from geoslide.evaluation.plots import new_figure, save_figure

    names = cmp.ranking[::-1]
    fig, ax = new_figure((6, 0.5 * len(names) + 1.2))
    for i, m in enumerate(names):
        s = cmp.scores[m]
        colour = "#d7191c" if m == cmp.chosen else "#2b83ba"
        ax.plot(s["auc_ci"], [i, i], color=colour, lw=2)
        ax.plot([s["auc"]], [i], "o", color=colour)
    ax.set_yticks(range(len(names)), [label(m) for m in names])
    ax.set_xlabel("pooled out-of-fold AUC (95 % block bootstrap)")
    ax.set_title("red: the model chosen on validation")
    save_figure(fig, path)


def write(cmp: Comparison, out: Path, classes: list[dict[str, Any]] | None = None) -> dict:
    """Write the report, JSON and figure into ``out``; returns their paths."""
    from geoslide.store.attrs import jsonable
    from geoslide.store.files import write_file

    out.mkdir(parents=True, exist_ok=True)
    auc_figure(cmp, out / "compare_auc.png")
    files = {**cmp.files, "report": str(out / "compare.md"),
             "json": str(out / "compare.json"), "figure": str(out / "compare_auc.png")}
    data = {"chosen": cmp.chosen, "ranking": cmp.ranking, "verdict": cmp.verdict,
            "scores": cmp.scores, "left_out": cmp.left_out, "blocks": cmp.blocks,
            "settings": cmp.settings, "warnings": cmp.warnings, "failures": cmp.failures(),
            "folds": [r.__dict__ for r in cmp.records], "classes": classes, "files": files}
    for name, text in (("compare.json", json.dumps(jsonable(data), indent=1, allow_nan=False)),
                       ("compare.md", markdown(cmp, classes, files))):
        write_file(out / name, text.encode(), what="the report", option="another --out")
    return files


__all__ = ["write", "markdown", "ranking_table", "folds_table", "auc_figure"]
