"""``sgworld report DIR``: one self-contained HTML page for a finished study run.

The page shows the study and its settings, every check of the study's ``checks(metrics)`` (value,
reference, tolerance and a pass / fail / info mark), all of metrics.json in a collapsed section,
every PNG figure with its caption from the study's ``FIGURES``, and the tail of run.log. Figures are
embedded as base64 data URIs and the style sheet is inline, so the file can be mailed or archived
on its own and opens without network access or JavaScript.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
from html import escape
from pathlib import Path

from . import __version__
from ._atomic import atomic_write

LOG_LINES = 40  # lines of run.log shown

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
.meta { color: #555; } table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-family: ui-monospace, monospace; white-space: nowrap; }
td.mark { font-weight: bold; white-space: nowrap; } tr.pass td.mark { color: #17803d; }
tr.fail td.mark, p.fail { color: #c0262d; } tr.fail { background: #fdecec; } tr.info td.mark { color: #777; }
code, pre { font-family: ui-monospace, monospace; font-size: 12px; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; margin: 0; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; margin-top: 0.3em; } .summary span { margin-left: 1em; font-weight: bold; }
.summary .pass { color: #17803d; } .summary .fail { color: #c0262d; }
"""

MARKS = {True: ("pass", "\u2714 pass"), False: ("fail", "\u2718 fail"), None: ("info", "\u00b7 info")}


def _read_json(path: Path, run_dir: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path} is missing; is {run_dir} the --out folder of a finished 'sgworld run'?")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); re-run the study to rewrite it") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object; re-run the study to rewrite it")
    return data


def _load_study(name, config_path: Path):
    from .experiments import STUDIES, load_study

    if not isinstance(name, str):
        raise ValueError(f"{config_path} names no study (key 'study'); re-run the study with this sgworld version")
    if name not in STUDIES:
        raise ValueError(f"{config_path} names unknown study {name!r}; known studies: {', '.join(STUDIES)}")
    try:
        return load_study(name)
    except ImportError as exc:
        raise ValueError(f"study {name!r} (from {config_path}) cannot be imported: {exc}") from None


def fmt(value, digits: int = 4) -> str:
    """A number or setting as short text (``digits`` significant digits for floats)."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt(v, digits)}" for k, v in value.items()) + "}"
    return str(value)


def _flatten(value, prefix: str = ""):
    """(dotted key, value) pairs down to numbers, strings and lists of numbers (matrices stay whole)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
        for i, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _numbers(value, digits: int) -> str:
    """Nested lists of numbers as text, rows of a matrix on their own lines."""
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return "\n".join(_numbers(v, digits) for v in value)
    return fmt(value, digits)


def _table(header, rows, cls: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return f'<table class="{cls}"><tr>{head}</tr>{"".join(rows)}</table>'


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk; None when the bytes are not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _checks_section(study, metrics: dict) -> tuple[str, str]:
    """(one-line tally for the header, the table of checks)."""
    checks_fn = getattr(study, "checks", None)
    if checks_fn is None:
        return "", "<p>This study defines no checks.</p>"
    try:
        checks = checks_fn(metrics)
    except (KeyError, IndexError, TypeError, ValueError) as exc:  # metrics.json from another version
        problem = escape(f"{type(exc).__name__}: {exc}")
        return "", (f'<p class="fail">The checks could not be computed from metrics.json ({problem}); '
                    "re-run the study with this sgworld version.</p>")
    verdicts = [None if c.ok is None else bool(c.ok) for c in checks]  # numpy bools count too
    counts = {mark: verdicts.count(ok) for ok, (mark, _) in MARKS.items()}
    rows = []
    for c, ok in zip(checks, verdicts):
        cls, mark = MARKS[ok]
        rows.append(f'<tr class="check {cls}"><td class="mark">{mark}</td><td>{escape(c.name)}</td>'
                    f'<td class="num">{escape(fmt(c.value))}</td><td class="num">{escape(fmt(c.reference))}</td>'
                    f"<td>{escape(c.tolerance)}</td><td>{escape(c.note)}</td></tr>")
    tally = "".join(f'<span class="{k}">{n} {k}</span>' for k, n in counts.items())
    return (f'<p class="summary">Checks: {tally}</p>',
            _table(["", "check", "value", "reference", "tolerance", "note"], rows, "checks"))


def _figures_section(run_dir: Path, captions: dict) -> str:
    present = {p.name: p for p in run_dir.glob("*.png") if p.is_file()}
    order = [n for n in captions if n in present] + sorted(n for n in present if n not in captions)
    parts = []
    for name in order:
        data = present[name].read_bytes()
        if _png_size(data) is None:
            parts.append(f"<p class=\"fail\">{escape(name)} is not a PNG file; skipped.</p>")
            continue
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        caption = captions.get(name)
        label = f"<code>{escape(name)}</code>" + (f": {escape(caption)}" if caption else "")
        parts.append(f'<figure><img src="{uri}" alt="{escape(caption or name)}"><figcaption>{label}</figcaption>'
                     "</figure>")
    missing = [n for n in captions if n not in present]
    if missing:
        parts.append(f"<p>Figures the study writes but this folder lacks: {escape(', '.join(missing))}.</p>")
    return "".join(parts) or "<p>No figures in this folder.</p>"


def _log_tail(run_dir: Path) -> str:
    path = run_dir / "run.log"
    if not path.is_file():
        return "<p>No run.log in this folder.</p>"
    lines = path.read_text(errors="replace").splitlines()
    shown = lines[-LOG_LINES:]
    note = f"<p>Last {len(shown)} of {len(lines)} lines.</p>" if len(lines) > len(shown) else ""
    return f"{note}<pre>{escape(chr(10).join(shown))}</pre>"


def render(run_dir: Path, config: dict, metrics: dict, study) -> str:
    name = config["study"]
    run_version = config.get("sgworld_version")
    version = escape(__version__)
    if run_version not in (None, __version__):
        version += f" (the run used {escape(str(run_version))})"
    tally, checks = _checks_section(study, metrics)
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    run_at = datetime.datetime.fromtimestamp((run_dir / "metrics.json").stat().st_mtime).astimezone()
    # Settings and metrics keep 7 digits: IFT averages such as <exp(-ds)> = 1.000003 live in the 6th.
    config_rows = [f"<tr><td><code>{escape(k)}</code></td><td><code>{escape(fmt(v, 7))}</code></td></tr>"
                   for k, v in config.items() if k not in ("study", "sgworld_version")]
    metric_rows = [f"<tr><td><code>{escape(k)}</code></td>"
                   + (f"<td><pre>{escape(_numbers(v, 7))}</pre></td></tr>" if isinstance(v, list) else
                      f"<td>{escape(v)}</td></tr>" if isinstance(v, str) else
                      f'<td class="num">{escape(fmt(v, 7))}</td></tr>')
                   for k, v in _flatten(metrics)]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sgworld report: {escape(name)}</title>
<style>{CSS}</style></head><body>
<h1>sgworld report: {escape(name)}</h1>
<p>{escape(getattr(study, "DESCRIPTION", ""))}</p>
<p class="meta">sgworld {version} &middot; run finished {run_at:%Y-%m-%d %H:%M} &middot; report written {escape(when)}
&middot; folder <code>{escape(str(run_dir))}</code></p>
{tally}
<h2>Configuration</h2>
{_table(["setting", "value"], config_rows, "config")}
<h2>Checks against theory</h2>
{checks}
<h2>All metrics</h2>
<details><summary>metrics.json, {len(metric_rows)} entries</summary>
{_table(["metric", "value"], metric_rows, "metrics")}
</details>
<h2>Figures</h2>
{_figures_section(run_dir, getattr(study, "FIGURES", {}))}
<h2>run.log</h2>
{_log_tail(run_dir)}
</body></html>
"""


def write_report(run_dir) -> Path:
    """Write ``run_dir/report.html`` for the study run in ``run_dir``; returns its path.

    Raises ValueError (one line, naming the path and the fix) when the folder, its config.json or
    metrics.json is missing or unreadable, or config.json names no known study.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run folder {run_dir} does not exist; pass the --out folder of 'sgworld run'")
    config_path = run_dir / "config.json"
    config = _read_json(config_path, run_dir)
    study = _load_study(config.get("study"), config_path)
    metrics = _read_json(run_dir / "metrics.json", run_dir)
    out = run_dir / "report.html"
    with atomic_write(out, "w", encoding="utf-8") as fh:  # a reader never sees half a report
        fh.write(render(run_dir, config, metrics, study))
    return out
