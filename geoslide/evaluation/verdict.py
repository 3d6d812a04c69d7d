"""The verdict of a comparison in plain words: which model maps the region best, by how much,
whether the difference is significant (its 95 % block-bootstrap interval excludes zero), which
candidates learnt nothing, and which map was written and why."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from geoslide.evaluation.compare import Comparison

NAMES = {"random": "the random baseline", "llr": "linear logistic regression (network)",
         "nn": "the per-pixel network", "sann": "the self-aligned per-pixel network (SANN)",
         "cnn": "the CNN", "sacnn": "the self-aligned CNN (SACNN)",
         "logreg": "logistic regression", "rf": "the random forest",
         "hgb": "gradient boosting"}


def label(model: str) -> str:
    """A model's name in words (``rf+aligned``: the random forest with aligned features)."""
    base, _, extra = model.partition("+")
    return NAMES.get(base, model) + (" with aligned features" if extra == "aligned" else "")


def _ci(v: list[float], digits: int = 3, sign: bool = False) -> str:
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f"[{f.format(v[0])}, {f.format(v[1])}]"


def _significance(cmp: "Comparison") -> tuple[list[str], list[str]]:
    """(candidates significantly worse than the chosen one, those level with it)."""
    worse, level = [], []
    for m in cmp.ranking:
        d = cmp.scores[m].get("auc_diff")
        if m == cmp.chosen or d is None or not np.isfinite(d[2]):
            continue
        text = f"{label(m)} ({d[0]:+.3f} AUC {_ci(d[1:], sign=True)})"
        (worse if d[2] < 0 else level).append(text)
    return worse, level


def _best(cmp: "Comparison") -> list[str]:
    best, chosen = cmp.ranking[0], cmp.chosen
    b, c = cmp.scores[best], cmp.scores[chosen]
    lines = [f"{label(best)[0].upper()}{label(best)[1:]} maps landslides best on this region: "
             f"pooled out-of-fold AUC {b['auc']:.3f} {_ci(b['auc_ci'])}; the 10 % of the "
             f"area it rates highest holds {b['top10']:.0%} of the landslides (20 %: "
             f"{b['top20']:.0%})."]
    if best == chosen:
        lines.append(f"It is also the model chosen on validation pixels (lowest pooled "
                     f"validation NLL, {c['val_nll']:.4f}): the map is its map.")
        return lines
    d = b["auc_diff"]
    sig = d[1] > 0
    lines.append(
        f"The map is made with {label(chosen)}, the model chosen on validation pixels (lowest "
        f"pooled validation NLL, {c['val_nll']:.4f}, against {b['val_nll']:.4f}); on the test "
        f"folds {label(best)} scores {d[0]:+.3f} AUC {_ci(d[1:], sign=True)} beside it, "
        + ("a significant difference: the out-of-fold best differs from the validation "
           f"choice; to map with it, run `geoslide compare ... --models {best}`."
           if sig else "within the interval: the two are level and the choice stands."))
    return lines


def _nothing(cmp: "Comparison") -> list[str]:
    """Candidates that learnt nothing (failed folds, or an AUC interval reaching 0.5), and
    those that rank landslides but whose probabilities are worse than the base rate's."""
    out = []
    for m, reasons in cmp.failures().items():
        out.append(f"{label(m)} failed on {len(reasons)} fold(s) and is not ranked "
                   f"({reasons[0].split(': ', 2)[-1].split('; no model file')[0][:160]})")
    for m in cmp.ranking:
        s = cmp.scores[m]
        if not s["auc_ci"][0] > 0.5:
            out.append(f"{label(m)} shows no skill: its AUC interval {_ci(s['auc_ci'])} "
                       "reaches 0.5, a coin's")
        elif s["nll"] >= s["base_rate_nll"]:
            out.append(f"{label(m)} ranks landslides (AUC {s['auc']:.3f}) but its "
                       f"probabilities are worse than the base rate's (out-of-fold NLL "
                       f"{s['nll']:.4f} against {s['base_rate_nll']:.4f}): read its map as a "
                       "ranking, not as probabilities")
    return out


def verdict(cmp: "Comparison") -> list[str]:
    """The verdict, one sentence a line."""
    lines = _best(cmp)
    worse, level = _significance(cmp)
    if worse:
        lines.append(f"Significantly worse than {label(cmp.chosen)}: " + "; ".join(worse) + ".")
    if level:
        lines.append(f"Level with {label(cmp.chosen)} (the interval holds zero): "
                     + "; ".join(level) + ".")
    lines += [s[0].upper() + s[1:] + "." for s in _nothing(cmp)]
    lines += [f"Left out: {label(m)}, because {why}." for m, why in cmp.left_out.items()]
    lines += [f"Caution: {w}." for w in cmp.warnings]
    return lines


def evaluation_verdict(ev: Any, mapped: str, why: str) -> list[str]:
    """The verdict over the models and peers of an evaluation (``ev``, whose differences are
    taken to ``mapped``, the model whose map was written, for the reason ``why``)."""
    res = {k: r for k, r in ev.results.items() if np.isfinite(r.get("auc", np.nan))
           and k != "random"}
    if mapped not in res:
        return [f"The map written is {label(mapped)}'s ({why})."]
    best = max(res, key=lambda k: res[k]["auc"])
    b, ci = res[best], (res[best].get("intervals") or {}).get("auc")
    lines = [f"On the test pixels {label(best)} maps landslides best: AUC {b['auc']:.3f}"
             + (f" {_ci(ci)}" if ci else "") + "."]
    lines.append(f"The map written is {label(mapped)}'s ({why}).")
    worse, level = [], []
    for k, r in sorted(res.items(), key=lambda kv: -kv[1]["auc"]):
        d = (r.get("intervals") or {}).get("auc_diff")
        if k == mapped or d is None or not np.isfinite(d[2]):
            continue
        text = f"{label(k)} ({d[0]:+.3f} AUC {_ci(d[1:], sign=True)})"
        (level if d[1] <= 0 <= d[2] else worse if d[2] < 0 else []).append(text)
        if d[1] > 0:
            lines.append(f"{label(k)[0].upper()}{label(k)[1:]} is significantly better than "
                         f"the map written ({d[0]:+.3f} AUC {_ci(d[1:], sign=True)}): "
                         f"`geoslide compare` chooses between them on validation pixels.")
    if level:
        lines.append(f"Level with {label(mapped)} (the interval holds zero): "
                     + "; ".join(level) + ".")
    if worse:
        lines.append(f"Significantly worse than {label(mapped)}: " + "; ".join(worse) + ".")
    return lines


__all__ = ["verdict", "evaluation_verdict", "label"]
