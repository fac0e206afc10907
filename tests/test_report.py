"""``sgworld report``: the HTML page of a study run, and the studies' checks on their quick runs."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import subprocess
from html import escape
from html.parser import HTMLParser

import pytest

from sgworld import __version__
from sgworld.cli import main
from sgworld.experiments import posterior, regression
from sgworld.experiments.common import Check, resolve_config
from sgworld.report import fmt, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXTRA_FIGURE = "zz_extra.png"  # a figure the study does not caption


class Page(HTMLParser):
    """What the tests look at: images, links, table rows (with their table's and row's class), captions."""

    def __init__(self, text: str):
        super().__init__()
        self.images, self.urls, self.tags, self.rows, self.captions = [], [], set(), [], []
        self._tables, self._row, self._cell, self._caption = [], None, None, None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        self.urls += [attrs[k] for k in ("src", "href") if attrs.get(k)]
        if tag == "img":
            self.images.append(attrs)
        elif tag == "table":
            self._tables.append(attrs.get("class", ""))
        elif tag == "tr":
            self._row = (self._tables[-1], attrs.get("class", ""), [])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row[2].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag == "table":
            self._tables.pop()
        elif tag == "figcaption":
            self.captions.append("".join(self._caption).strip())
            self._caption = None

    def handle_data(self, data):
        for buffer in (self._cell, self._caption):
            if buffer is not None:
                buffer.append(data)


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has first, right after the signature."""
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture(scope="module")
def posterior_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("posterior")
    assert main(["run", "posterior", "--quick", "--out", str(out), "-q"]) == 0
    shutil.copy(out / "kl_vs_lr.png", out / EXTRA_FIGURE)
    return out


@pytest.fixture(scope="module")
def report(posterior_run):
    path = write_report(posterior_run)
    return path, Page(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def regression_metrics(tmp_path_factory):
    out = tmp_path_factory.mktemp("regression")
    regression.run(resolve_config(regression.Config, regression.QUICK), out, progress=False)
    return out, json.loads((out / "metrics.json").read_text())


# --------------------------------------------------------------------------- the page


def test_report_embeds_every_figure_as_a_valid_png(posterior_run, report):
    path, page = report
    assert path == posterior_run / "report.html"
    on_disk = sorted(p.name for p in posterior_run.glob("*.png"))
    assert len(page.images) == len(on_disk) == 2
    for img in page.images:
        prefix, _, payload = img["src"].partition(",")
        assert prefix == "data:image/png;base64"
        width, height = png_size(base64.b64decode(payload, validate=True))
        assert width > 0 and height > 0
    # the study's figures first, with their captions; one it does not caption shows under its file name
    assert page.captions == [f"kl_vs_lr.png: {posterior.FIGURES['kl_vs_lr.png']}", EXTRA_FIGURE]


def test_report_shows_every_check_config_value_and_no_external_resource(posterior_run, report):
    path, page = report
    text = path.read_text(encoding="utf-8")
    metrics = json.loads((posterior_run / "metrics.json").read_text())
    checks = posterior.checks(metrics)
    rows = [(cls, cells) for table, cls, cells in page.rows if table == "checks" and cls.startswith("check")]
    assert len(rows) == len(checks)
    marks = {True: ("check pass", "pass"), False: ("check fail", "fail"), None: ("check info", "info")}
    for check, (cls, cells) in zip(checks, rows):
        mark, name, value, reference, tolerance, _ = cells
        assert (cls, mark.split()[-1]) == marks[check.ok]
        assert name == check.name and value == fmt(check.value) and reference == fmt(check.reference)
        assert tolerance == check.tolerance
    config = json.loads((posterior_run / "config.json").read_text())
    shown = {cells[0]: cells[1] for table, _, cells in page.rows if table == "config" and len(cells) == 2}
    for key, value in config.items():
        if key not in ("study", "sgworld_version"):
            assert shown[key] == fmt(value, 7), key
    assert escape(posterior.DESCRIPTION) in text and f"sgworld {__version__}" in text
    assert "<details>" in text and "metrics.json" in text and "done in" in text  # metrics and run.log tail
    assert not [u for u in page.urls if not u.startswith("data:")]
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text)


def find_browser() -> str | None:
    """A headless-capable Chromium or Chrome on PATH. Where the browser is required (``.ci/run`` sets
    SGWORLD_REQUIRE_BROWSER=1 after installing Debian's chromium), its absence is a failure, not a skip."""
    browser = next((b for b in map(shutil.which, ("chromium", "chromium-browser", "google-chrome",
                                                  "google-chrome-stable")) if b), None)
    if browser is None:
        message = "no chromium or chrome binary on PATH (Debian: apt-get install -y chromium)"
        if os.environ.get("SGWORLD_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; SGWORLD_REQUIRE_BROWSER=1 requires it")
        pytest.skip(message)
    return browser


def decoded_in_browser(browser: str, html: str, tmp_path) -> list[str]:
    """Load ``html`` in headless Chromium; after the load event a script marks each <img> with whether the
    browser decoded it (complete, naturalWidth > 0). Returns the marks ('yes' / 'no') in document order."""
    marker = ("<script>window.addEventListener('load', () => { for (const img of document.images) "
              "img.setAttribute('data-decoded', img.complete && img.naturalWidth > 0 ? 'yes' : 'no'); "
              "document.body.setAttribute('data-probe', 'done'); });</script>")
    tmp_path.mkdir(parents=True, exist_ok=True)
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", marker + "</body>"), encoding="utf-8")
    result = subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
                             "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-probe="done"' in result.stdout, f"the browser did not load the page: {result.stderr[-1000:]}"
    return re.findall(r'data-decoded="(yes|no)"', result.stdout)


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = find_browser()
    path, page = report
    html = path.read_text(encoding="utf-8")
    assert decoded_in_browser(browser, html, tmp_path / "report") == ["yes"] * len(page.images)
    assert len(page.images) == 2
    # The probe can fail: a figure whose PNG bytes are damaged (valid base64, truncated data) is reported.
    payload = page.images[0]["src"].partition(",")[2]
    damaged = base64.b64encode(base64.b64decode(payload)[:100]).decode()
    marks = decoded_in_browser(browser, html.replace(payload, damaged, 1), tmp_path / "damaged")
    assert marks == ["no"] + ["yes"] * (len(page.images) - 1)


@pytest.mark.parametrize("case, message", [
    ("missing_dir", "does not exist"),
    ("no_config", r"config\.json is missing"),
    ("no_metrics", r"metrics\.json is missing"),
    ("bad_metrics", r"metrics\.json is not valid JSON"),
    ("bad_config", r"config\.json is not valid JSON"),
    ("list_metrics", "must hold a JSON object"),
    ("no_study", "names no study"),
    ("unknown_study", "unknown study 'nosuch'"),
])
def test_report_errors_name_the_file_and_the_fix(posterior_run, tmp_path, case, message):
    run = tmp_path / "run"
    if case != "missing_dir":
        run.mkdir()
        config = json.loads((posterior_run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps(config))
        (run / "metrics.json").write_text((posterior_run / "metrics.json").read_text())
    if case == "no_config":
        (run / "config.json").unlink()
    elif case == "no_metrics":
        (run / "metrics.json").unlink()
    elif case == "bad_metrics":
        (run / "metrics.json").write_text('{"results": [1, 2')
    elif case == "bad_config":
        (run / "config.json").write_text("not json")
    elif case == "list_metrics":
        (run / "metrics.json").write_text("[]")
    elif case in ("no_study", "unknown_study"):
        config.pop("study")
        if case == "unknown_study":
            config["study"] = "nosuch"
        (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message) as info:
        write_report(run)
    assert str(run) in str(info.value) and "\n" not in str(info.value)
    assert not (run / "report.html").exists()


# --------------------------------------------------------------------------- the studies' checks


def assert_checks_sound(checks):
    assert checks and all(isinstance(c, Check) for c in checks)
    assert len({c.name for c in checks}) == len(checks)
    for c in checks:
        if c.value is None:  # a number this run could not produce: said so, never a failure
            assert c.ok is None and c.note, c
        else:
            assert math.isfinite(c.value), c
        assert c.ok is not False, c
        assert c.ok is None or c.tolerance, c


def test_posterior_checks_on_the_quick_run(posterior_run):
    checks = posterior.checks(json.loads((posterior_run / "metrics.json").read_text()))
    assert_checks_sound(checks)
    judged = [c.name for c in checks if c.ok is not None]
    assert sum("exact discrete-time moments" in n for n in judged) == 3
    assert sum("slope of exact" in n for n in judged) == 3
    assert set(posterior.FIGURES) == {p.name for p in posterior_run.glob("*.png")} - {EXTRA_FIGURE}


def test_regression_checks_on_the_quick_run(regression_metrics):
    out, metrics = regression_metrics
    checks = regression.checks(metrics)
    assert_checks_sound(checks)
    judged = " | ".join(c.name for c in checks if c.ok is not None)
    for what in ("WR: Sigma", "areal velocity", "entropy production per step, simulated", "IFT", "DFT",
                 "WOR: stationary mean", "WOR: Sigma"):
        assert what in judged, what
    assert set(regression.FIGURES) == {p.name for p in out.glob("*.png")}


def test_checks_fail_when_simulation_and_theory_disagree(regression_metrics):
    _, metrics = regression_metrics
    bad = json.loads(json.dumps(metrics))
    bad["wr"]["sigma_z_diag"][0] = 50.0  # beyond the t quantile of any group count
    bad["wr"]["dft_slope_ci"] = [1.2, 1.4]
    bad["wor"]["mean_z"][0] = None  # NaN in the JSON: a failure, not a pass
    failed = {c.name for c in regression.checks(bad) if c.ok is False}
    assert {"WR: Sigma diagonal vs Lyapunov theory, max |z|", "WOR: stationary mean vs w_eff = argmin L_eff, max |z|"
            } <= failed and any(n.startswith("DFT slope") for n in failed)
