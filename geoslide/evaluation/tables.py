"""The tables of the evaluation report (markdown), from an :class:`~geoslide.evaluation.scores.Evaluation`.

:func:`headline_table` (AUC, share of landslides in the top 10 % / 20 % of the area),
:func:`table2` (NLL and the paper's Table 2 columns), :func:`differences_table`,
:func:`importance_table`, :func:`spread_table`, :func:`classes_table`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from geoslide.evaluation.scores import Evaluation


def fmt(v: Any, digits: int = 4, sign: bool = False) -> str:
    """``v`` with ``digits`` decimals (``sign``: always signed); "–" for None or NaN."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:{'+' if sign else ''}.{digits}f}"


def _ci(r: dict, key: str, digits: int) -> str:
    iv = (r.get("intervals") or {}).get(key)
    return f" [{fmt(iv[0], digits)}, {fmt(iv[1], digits)}]" if iv else ""


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
            rows.append(f"| {r.get('label', name)}{flag} | {fmt(r['nll'])}{_ci(r, 'nll', 4)} | "
                        f"{fmt(r.get('train_nll'))} | {fmt(r.get('auc'), 3)}{_ci(r, 'auc', 3)} | "
                        f"{fmt(r.get('average_precision'), 3)} | {fmt(r.get('brier'), 5)} | "
                        f"{fmt(r.get('ece'), 4)} | {fmt(r.get('rate_auc'), 3)} |")
    rnd, base = ev.baselines["random_expected"], ev.baselines["base_rate"]
    rows.append(f"| Random (expected, paper §5.1) | {fmt(rnd['test_nll'])} | "
                f"{fmt(rnd['train_nll'])} | 0.500 | – | – | – | 0.500 |")
    rows.append(f"| Base rate (constant {base['probability']:.4f}) | {fmt(base['test_nll'])} | "
                f"{fmt(base['train_nll'])} | 0.500 | – | – | – | 0.500 |")
    return head + "\n" + "\n".join(rows)


def _share(r: dict, rate: str, key: str) -> str:
    v = (r.get(rate) or {}).get(key)
    return "–" if v is None or not math.isfinite(v) else f"{v:.0%}"


def headline_table(ev: "Evaluation") -> str:
    """Per map: test AUC with its 95% interval and the share of the test (prediction rate)
    and training (success rate) landslide pixels in the 10 % and 20 % of the area the map
    rates most susceptible; models first, then peers."""
    keys = next((list(r["prediction_rate"]) for r in ev.results.values()
                 if r.get("prediction_rate")), ["top10", "top20"])
    pct = [f"{k[3:]} %" for k in keys]
    head = ("| method | test AUC [95% CI] | "
            + " | ".join(f"test landslides in the top {p} of the area" for p in pct) + " | "
            + " | ".join(f"training landslides in the top {p}" for p in pct) + " |\n|---|---|"
            + "---|" * (2 * len(keys)))
    rows = [f"| {r.get('label', name)} | {fmt(r.get('auc'), 3)}{_ci(r, 'auc', 3)} | "
            + " | ".join(_share(r, "prediction_rate", k) for k in keys) + " | "
            + " | ".join(_share(r, "success_rate", k) for k in keys) + " |"
            for kind in ("model", "peer") for name, r in ev.results.items()
            if r.get("kind") == kind]
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
        rows.append(f"| {r.get('label', name)} | {fmt(dn, 4, True)} [{fmt(ln, 4, True)}, "
                    f"{fmt(hn, 4, True)}] | "
                    f"{fmt(da, 3, True)} [{fmt(la, 3, True)}, {fmt(ha, 3, True)}] |")
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
                         f"{fmt(r['nll'], 4, True)} [{fmt(r['nll_low'], 4, True)}, "
                         f"{fmt(r['nll_high'], 4, True)}]")
        rows.append(f"| {g} | " + " | ".join(cells) + " |")
    return head + "\n" + "\n".join(rows)


def spread_table(ev: "Evaluation") -> str:
    """One row per seed ensemble: members, scored test pixels, the mean and 95th percentile
    of its spread, and its mean on landslide vs stable test pixels; empty without one."""
    rows = [f"| {r.get('label', n)} | {s['members']} | {s['pixels']} | "
            f"{fmt(s['mean_std'], 5)} | {fmt(s['p95_std'], 5)} | "
            f"{fmt(s['mean_std_landslide'], 5)} | {fmt(s['mean_std_stable'], 5)} |"
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


__all__ = ["headline_table", "table2", "differences_table", "importance_table",
           "spread_table", "classes_table", "fmt"]
