"""Results pages rendered from the JSON that geoslide's scripts write.

A results page names a JSON file on a line of its own::

    <!-- results: compare-basin.json | examples/compare.py basin --out out/compare-basin -->

and the build replaces that line with markdown: one header line (command, date, commit,
machine) and tables of the figures. The path is relative to ``docs/results/``; the text after
``|`` is the command that writes the file, shown when the file is missing ("not measured
yet"), so a page never fails for a figure nobody has measured. The functions below are plain
Python (``render(path, command)``), used by the Sphinx hook and by the tests.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"
MARKER = re.compile(r"^<!-- results: (?P<path>\S+)(?: \| (?P<command>.*?))? -->$", re.M)
META = ("command", "date", "commit", "machine")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{_fmt(value[0])}, {_fmt(value[1])}]"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 80 else text[:77] + "..."
    return str(value).replace("|", "\\|").replace("\n", " ")


def header(data: dict, command: str | None = None) -> str:
    """One line: command, date, commit and machine of the run that wrote ``data``."""
    got = {k: data.get(k) for k in META}
    if not got["command"] and command:
        got["command"] = command
    parts = [f"`{got['command']}`" if got["command"] else "command not recorded"]
    parts += [f"{k} {got[k]}" if got[k] else f"{k} not recorded" for k in META[1:]]
    if data.get("exit_code") not in (None, 0):
        parts.append(f"exit code {data['exit_code']}")
    return "**Run:** " + " · ".join(parts)


def table(rows: dict[str, dict], first: str = "") -> str:
    """A markdown table of ``{row: {column: value}}``."""
    cols: list[str] = []
    for row in rows.values():
        cols += [c for c in row if c not in cols]
    lines = ["| " + " | ".join([first, *cols]) + " |", "|" + "---|" * (len(cols) + 1)]
    for name, row in rows.items():
        lines.append("| " + " | ".join([_fmt(name), *(_fmt(row.get(c, "")) for c in cols)]) + " |")
    return "\n".join(lines)


def _scalars(data: dict) -> dict:
    return {k: v for k, v in data.items() if not isinstance(v, (dict, list)) or (
        isinstance(v, list) and len(v) <= 4 and all(not isinstance(x, (dict, list)) for x in v))}


def generic(data: Any, title: str = "") -> str:
    """Any JSON: scalars as one key/value table, a dict of flat dicts or a list of flat dicts
    as one table, anything deeper section by section."""
    out = []
    if isinstance(data, list):
        if data and all(isinstance(x, dict) for x in data):
            return table({str(i): _scalars(x) for i, x in enumerate(data)}, "#")
        return "\n".join(f"- {_fmt(x)}" for x in data)
    if not isinstance(data, dict):
        return _fmt(data)
    flat = {k: v for k, v in _scalars(data).items() if k not in META}
    if flat:
        out.append(table({k: {"value": v} for k, v in flat.items()}, "figure"))
    for key, value in data.items():
        if key in flat or key in META:
            continue
        name = f"{title} / {key}" if title else key
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            out += [f"**{name}**", table({k: _scalars(v) for k, v in value.items()})]
        elif isinstance(value, dict) and value and not any(isinstance(v, (dict, list))
                                                          for v in value.values()):
            out += [f"**{name}**", table({k: {"value": v} for k, v in value.items()})]
        else:
            out += [f"**{name}**", generic(value, name)]
    return "\n\n".join(out)


def compare(data: dict) -> str:
    """``examples/compare.py`` (``figures.json``): the verdict, the pooled out-of-fold scores
    with their 95 % intervals, what was left out and what failed."""
    rows = {}
    for model, s in data.get("scores", {}).items():
        rows[model] = {"AUC": s.get("auc"), "AUC 95 %": s.get("auc_ci"),
                       "landslides in top 10 %": s.get("top10"),
                       "landslides in top 20 %": s.get("top20"), "NLL": s.get("nll"),
                       "NLL 95 %": s.get("nll_ci"), "validation NLL": s.get("val_nll")}
    if "chosen_sacnn" in data:               # a study (examples/sacnn_small.py)
        out = [f"SACNN configuration chosen on validation: `{data['chosen_sacnn']}`; best "
               f"per-pixel model: `{data.get('best_per_pixel')}`; the chosen one's pooled AUC "
               f"inside the best per-pixel model's interval: {data.get('goal_met')}."]
    else:
        out = ["Chosen: `{}`; ranked: {}.".format(
            data.get("chosen"), ", ".join(f"`{m}`" for m in data.get("ranking", [])) or "none")]
    if rows:
        out.append(table(rows, "model"))
    if data.get("verdict"):
        out.append("The verdict, as `compare.md` opens:\n\n"
                   + "\n".join(f"- {_fmt(v)}" for v in data["verdict"]))
    if data.get("compare_seconds") is not None:
        out.append(f"Wall time: {_fmt(data.get('prepare_seconds'))} s to prepare the store and "
                   f"its aligned features, {data['compare_seconds'] / 60:.1f} min for `compare` "
                   "(every fold, the refit, the map and the report); per model:")
    secs = data.get("fold_seconds_per_model") or {}
    if secs:
        out.append(table({m: {"seconds (all folds)": s} for m, s in secs.items()}, "model"))
    for key, what in (("left_out", "Left out"), ("failures", "Failures")):
        if data.get(key):
            out.append(f"{what}:\n\n" + "\n".join(
                f"- `{m}`: {_fmt(r if isinstance(r, str) else '; '.join(map(str, r)))}"
                for m, r in data[key].items()))
    return "\n\n".join(out)


RENDERERS = {"compare": compare, "sacnn-small": compare}  # a study is a comparison


def render(path: str | Path, command: str | None = None, root: Path = RESULTS) -> str:
    """The markdown for one results file (``root / path``), or "not measured yet"."""
    file = root / path
    if not file.exists():
        how = f": `{command}` writes it" if command else ""
        return f"*Not measured yet* (`docs/results/{path}`{how})."
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        return f"*Not readable* (`docs/results/{path}`: {exc})."
    kind = next((k for k in RENDERERS if Path(path).name.startswith(k)), None)
    meta = data if isinstance(data, dict) else {}
    body = RENDERERS[kind](data) if kind else generic(data)
    return header(meta, command) + "\n\n" + body


def expand(text: str, root: Path = RESULTS, seen: list[Path] | None = None) -> str:
    """Every results marker of a page's source replaced by its rendering."""
    def one(m: re.Match) -> str:
        if seen is not None:
            seen.append(root / m["path"])
        return render(m["path"], m["command"], root)

    return MARKER.sub(one, text)


def _source_read(app, docname: str, source: list[str]) -> None:  # noqa: ANN001
    seen: list[Path] = []
    source[0] = expand(source[0], seen=seen)
    for path in seen:
        if path.exists():
            app.env.note_dependency(str(path))


def setup(app):  # noqa: ANN001, ANN201
    app.connect("source-read", _source_read)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
