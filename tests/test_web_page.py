"""The web page of `attn serve` and its /attention endpoint, end to end.

`attn serve` runs as a user starts it (the installed script, a free 127.0.0.1 port) with the
demo-trained models of conftest.py. The first tests read the page and the API over HTTP; the
browser tests drive headless Chromium with Selenium: type, press Translate, compare what the
page shows with what the API answers, read the heatmap from the DOM, hover pieces, and fail
on any error in the browser's console.

The browser tests need Debian's `chromium` and `chromium-driver` and the `browser` extra
(`pip install -e '.[browser]'`); .ci/run installs all three. When one is missing they FAIL,
saying what to install: they are never skipped silently. ATTN_CHROMIUM and ATTN_CHROMEDRIVER
name other binaries.

ATTN_SCREENSHOT_MODEL=DIR (a translation model, e.g. one trained on Multi30k) makes
`test_screenshots` write docs/serve-explorer.png (1280 px wide) and
docs/serve-explorer-390.png (390 px wide) from that model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import require_extra
from typer.testing import CliRunner

from attn.cli.main import app as cli_app

ATTN = str(Path(sys.executable).parent / "attn")
DOCS = Path(__file__).resolve().parents[1] / "docs"
MAX_CHARS = 1000
SENTENCE = "A dog runs in the park."
# 20 words: the sentence the click-to-heatmap time is measured on.
TWENTY_WORDS = (
    "The red car is in the garden and a woman reads a book while the children play in the park ."
)
SCREENSHOT_SENTENCE = "A man in a blue shirt is riding a bike down the street."
SCREENSHOT_PIECE = "Fahrrad"  # the output piece pinned in the picture, when the output has it


# --- the server ------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _extra() -> None:
    require_extra("serve", "fastapi", "uvicorn")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def attn_serve(
    *models: Path, max_chars: int | None = MAX_CHARS, options: tuple[str, ...] = ()
) -> Iterator[str]:
    """Run `attn serve -m DIR... [options]` on a free loopback port (max_chars None: the
    default limit of characters per text); yield its base URL."""
    port = free_port()
    cmd = [ATTN, "serve", "--port", str(port), "--threads", "1", *options]
    if max_chars is not None:
        cmd += ["--max-chars", str(max_chars)]
    for model in models:
        cmd += ["-m", str(model)]
    env = {k: v for k, v in os.environ.items() if k != "ATTN_API_KEYS"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "attn serve did not answer within 120 s"
            try:
                call(base, "/health")
                break
            except OSError:
                time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def call(base: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(status, parsed JSON) of a GET (no body) or a POST of `body` as JSON."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def server(translate_model: Path, summarize_model: Path, sentiment_model: Path) -> Iterator[str]:
    with attn_serve(translate_model, summarize_model, sentiment_model) as base:
        yield base


# --- the page and the API, over HTTP -------------------------------------------------------


def test_the_page_and_its_files_are_served_from_the_package(server) -> None:
    with urllib.request.urlopen(server + "/") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        html = response.read().decode()
    assets = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert sorted(assets) == ["/static/app.js", "/static/style.css", "data:,"]
    total = len(html.encode())
    for asset in ("/static/app.js", "/static/style.css"):
        with urllib.request.urlopen(server + asset) as response:
            body = response.read().decode()
        total += len(body.encode())
        # Offline: nothing is fetched from elsewhere (the SVG namespace is a name, not a fetch).
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", body), asset
    assert not re.search(r"https?://", html)
    print(f"page size: {total} bytes (HTML, CSS and JavaScript)")


def test_health_describes_the_models_and_the_limits(server) -> None:
    status, body = call(server, "/health")
    assert status == 200
    assert body["limits"] == {"max_texts": 64, "max_chars": MAX_CHARS, "max_body_bytes": 1 << 20}
    model = body["models"]["translate"]
    assert model["preset"] == "tiny"
    assert model["parameters"] > 0
    assert model["heads"] >= 1 and model["layers"]["decoder"] >= 1
    assert set(model["languages"]) == {"source", "target"}
    assert "languages" not in body["models"]["sentiment"]


def test_attention_endpoint_gives_what_attn_attention_prints(server, translate_model) -> None:
    result = CliRunner().invoke(
        cli_app, ["attention", SENTENCE, "-m", str(translate_model), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    cli = json.loads(result.stdout)
    status, api = call(server, "/attention", {"text": SENTENCE})
    assert status == 200
    assert_same_maps(api, cli)

    args = ["--kind", "cross", "--layer", "1", "--heads"]
    result = CliRunner().invoke(
        cli_app, ["attention", SENTENCE, "-m", str(translate_model), "--format", "json", *args]
    )
    status, api = call(
        server, "/attention", {"text": SENTENCE, "kind": "cross", "layer": 1, "heads": True}
    )
    assert status == 200
    assert_same_maps(api, json.loads(result.stdout))
    assert [m["head"] for m in api["maps"]] == list(range(len(api["maps"])))


def assert_same_maps(api: dict[str, Any], cli: dict[str, Any]) -> None:
    # The server's CPU layout of the weights may move the 6th digit; nothing more.
    assert {k: v for k, v in api.items() if k != "maps"} == {
        k: v for k, v in cli.items() if k != "maps"
    }
    assert len(api["maps"]) == len(cli["maps"])
    for a, c in zip(api["maps"], cli["maps"], strict=True):
        assert {k: v for k, v in a.items() if k != "matrix"} == {
            k: v for k, v in c.items() if k != "matrix"
        }
        for row_a, row_c in zip(a["matrix"], c["matrix"], strict=True):
            assert row_a == pytest.approx(row_c, abs=2e-5)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"text": "x" * (MAX_CHARS + 1)}, 413, f"at most {MAX_CHARS} are allowed"),
        ({"texts": ["A dog runs."]}, 422, 'attention takes one "text"'),
        ({"text": "   "}, 422, "the text is empty"),
        ({"text": SENTENCE, "layer": 99}, 422, "layer must be between 0 and"),
        ({"text": SENTENCE, "head": 0, "heads": True}, 422, "exclude each other"),
        ({"text": SENTENCE, "kind": "diagonal"}, 422, "kind"),
        ({"text": SENTENCE, "task": "sentiment", "kind": "cross"}, 422, "no cross attention"),
    ],
)
def test_attention_errors_are_4xx_with_a_message(server, body, status, message) -> None:
    got, answer = call(server, "/attention", body)
    assert got == status
    assert message in answer["error"]


def test_attention_for_a_task_without_a_model_is_404(translate_model) -> None:
    with attn_serve(translate_model) as base:
        status, body = call(base, "/attention", {"text": SENTENCE, "task": "summarize"})
    assert status == 404
    assert "no summarize model is loaded" in body["error"]


# --- in the browser ------------------------------------------------------------------------


def _browser_paths() -> tuple[str, str]:
    """The Chromium and chromedriver binaries; the test FAILS (not skips) without them."""
    install = (
        "install them with `apt-get install -y chromium chromium-driver` and "
        "`pip install -e '.[browser]'` (.ci/run does both)"
    )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail(f"the browser tests need selenium: {install}", pytrace=False)
    browser = os.environ.get("ATTN_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = os.environ.get("ATTN_CHROMEDRIVER") or shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    if missing:
        pytest.fail(f"browser tests: {' and '.join(missing)} not found; {install}", pytrace=False)
    return browser, driver  # type: ignore[return-value]


@pytest.fixture(scope="module")
def chrome() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = _browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The page in the browser, and the console errors a test expects (none by default)."""

    def __init__(self, driver: Any, base: str) -> None:
        self.driver = driver
        self.base = base
        self.expected_errors: list[str] = []

    def open(self, width: int = 1280) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": width < 600},
        )
        self.driver.get(self.base + "/")
        self.wait(lambda d: d.find_elements("css selector", "#models input"))

    def wait(self, condition: Any, timeout: float = 120) -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(condition)

    def find(self, css: str) -> Any:
        return self.driver.find_element("css selector", css)

    def all(self, css: str) -> list[Any]:
        return self.driver.find_elements("css selector", css)

    def type(self, text: str) -> None:
        box = self.find("#text")
        box.clear()
        box.send_keys(text)

    def run(self, task: str) -> float:
        """Press the task's button; wait for the output and (translate, summarize) the
        heatmap; the seconds from the click to a drawn heatmap (or the output)."""
        start = time.perf_counter()
        self.find(f'button[data-task="{task}"]').click()
        if task == "sentiment":
            self.wait(lambda d: self.find("#sentiment").text and not self.busy())
        else:
            self.wait(
                lambda d: (
                    self.find("#explorer").get_attribute("data-state") == "ready"
                    and self.all("#heatmap rect[data-w]")
                )
            )
        return time.perf_counter() - start

    def busy(self) -> bool:
        return self.find("body").get_attribute("aria-busy") == "true"

    def heatmap(self) -> dict[str, Any]:
        """The drawn heatmap, read from the DOM: its selection and every cell's weight."""
        return self.driver.execute_script(
            """
            const svg = document.getElementById("heatmap");
            const rows = Number(svg.dataset.rows), cols = Number(svg.dataset.cols);
            const w = Array.from({length: rows}, () => Array(cols).fill(null));
            const masked = [];
            for (const r of svg.querySelectorAll("rect[data-w]")) {
              w[r.dataset.r][r.dataset.c] = Number(r.dataset.w);
              if (r.classList.contains("masked")) masked.push([+r.dataset.r, +r.dataset.c]);
            }
            return {kind: svg.dataset.kind, layer: svg.dataset.layer, head: svg.dataset.head,
                    rows, cols, weights: w, masked,
                    focusRow: svg.dataset.focusRow, focusCol: svg.dataset.focusCol};
            """
        )

    def select(self, css: str, value: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.find(css)).select_by_value(value)

    def console_errors(self) -> list[dict[str, Any]]:
        """Severe console entries, less the expected ones (e.g. the 413 a test asked for)."""
        entries = self.driver.get_log("browser")
        return [
            e
            for e in entries
            if e["level"] == "SEVERE"
            and not any(pattern in e["message"] for pattern in self.expected_errors)
        ]


@pytest.fixture
def page(chrome, server) -> Iterator[Page]:
    page = Page(chrome, server)
    chrome.get_log("browser")  # what an earlier test left
    yield page
    errors = page.console_errors()
    assert not errors, f"errors in the browser console: {errors}"


def test_translate_shows_what_the_api_gives(page, server) -> None:
    page.open()
    assert [i.get_attribute("value") for i in page.all("#models input")] == [
        "translate",
        "summarize",
        "sentiment",
    ]
    assert "tiny" in page.find("#models").text
    page.type(SENTENCE)
    page.run("translate")
    status, api = call(server, "/translate", {"text": SENTENCE})
    assert status == 200
    assert page.find("#output").text == api["output"]
    assert page.find("#error").text == ""


def test_enter_submits_and_classify_shows_a_probability_bar(page, server) -> None:
    from selenium.webdriver.common.keys import Keys

    page.open()
    page.find('#models input[value="sentiment"]').click()
    page.type("I loved this film, it was wonderful.")
    page.find("#text").send_keys(Keys.ENTER)
    page.wait(lambda d: page.find("#sentiment").text and not page.busy())
    status, api = call(
        server, "/sentiment", {"text": "I loved this film, it was wonderful.", "probs": True}
    )
    assert status == 200
    assert page.find("#sentiment .label-big").text == api["label"]
    bars = page.all("#sentiment .prob")
    assert len(bars) == len(api["probs"])
    top = page.find("#sentiment .prob.top")
    assert top.find_element("css selector", "b").text == api["label"]
    assert top.find_element("css selector", ".value").text == f"{100 * api['prob']:.1f}%"
    width = page.driver.execute_script(
        "return document.querySelector('#sentiment .prob.top .fill').style.width"
    )
    assert float(width.removesuffix("%")) == pytest.approx(100 * api["prob"], abs=0.05)
    assert page.find("#explorer").get_attribute("hidden") is not None


def test_heatmap_cells_are_the_attention_weights(page, server) -> None:
    page.open()
    page.type(TWENTY_WORDS)
    seconds = page.run("translate")
    own = page.find("#explorer").get_attribute("data-render-ms")
    print(f"click to heatmap, 20 words: {1000 * seconds:.0f} ms (the page's own count: {own} ms)")
    status, api = call(server, "/attention", {"text": TWENTY_WORDS, "heads": True, "digits": 4})
    assert status == 200
    n_out, n_src = len(api["output_tokens"]), len(api["source_tokens"])

    # Cross-attention, a chosen layer and head: output pieces x source pieces, rows sum to 1.
    last = max(m["layer"] for m in api["maps"] if m["kind"] == "cross")
    page.select("#layer", str(last))
    page.select("#head", "1")
    drawn = page.heatmap()
    assert (drawn["kind"], drawn["layer"], drawn["head"]) == ("cross", str(last), "1")
    assert (drawn["rows"], drawn["cols"]) == (n_out, n_src)
    want = next(m for m in api["maps"] if (m["kind"], m["layer"], m["head"]) == ("cross", last, 1))
    for row, expected in zip(drawn["weights"], want["matrix"], strict=True):
        assert sum(row) == pytest.approx(1, abs=2e-3)
        assert row == pytest.approx(expected, abs=1e-9)

    # Mean over heads: the mean of the heads' maps.
    page.select("#head", "mean")
    heads = [m["matrix"] for m in api["maps"] if (m["kind"], m["layer"]) == ("cross", last)]
    for i, row in enumerate(page.heatmap()["weights"]):
        assert sum(row) == pytest.approx(1, abs=2e-3)
        mean = [sum(h[i][j] for h in heads) / len(heads) for j in range(n_src)]
        assert row == pytest.approx(mean, abs=1e-6)

    # Encoder self-attention: source x source.
    page.find('#kinds input[value="encoder"] + span').click()
    drawn = page.heatmap()
    assert (drawn["kind"], drawn["rows"], drawn["cols"]) == ("encoder", n_src, n_src)
    assert all(sum(row) == pytest.approx(1, abs=2e-3) for row in drawn["weights"])

    # Decoder masked self-attention: the upper triangle is drawn empty (hatched), weight 0.
    page.find('#kinds input[value="decoder"] + span').click()
    drawn = page.heatmap()
    assert (drawn["kind"], drawn["rows"], drawn["cols"]) == ("decoder", n_out, n_out)
    upper = [[i, j] for i in range(n_out) for j in range(n_out) if j > i]
    assert sorted(drawn["masked"]) == upper
    assert all(drawn["weights"][i][j] == 0 for i, j in upper)
    assert all(sum(row) == pytest.approx(1, abs=2e-3) for row in drawn["weights"])


def test_hover_lights_up_the_row_and_the_pieces_it_attends_to(page, server) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    page.open()
    page.type(TWENTY_WORDS)
    page.run("translate")
    page.select("#head", "0")
    drawn = page.heatmap()
    for k in (0, drawn["rows"] // 2, drawn["rows"] - 1):
        token = page.find(f"#row-tokens [data-r='{k}']")
        ActionChains(page.driver).move_to_element(token).perform()
        drawn = page.heatmap()
        assert drawn["focusRow"] == str(k)
        assert page.find("#row-hi").get_attribute("visibility") == "visible"
        lit = [float(t.get_attribute("data-weight")) for t in page.all("#col-tokens .tok")]
        assert lit == pytest.approx(drawn["weights"][k], abs=1e-9)
        best = max(range(len(lit)), key=lit.__getitem__)
        top = page.all("#col-tokens .tok.top")
        assert [t.get_attribute("data-c") for t in top] == [str(best)]
        assert "%" in page.find("#readout").text

    # A source piece: its column, and the output pieces that attend to it.
    c = drawn["cols"] // 2
    ActionChains(page.driver).move_to_element(page.find(f"#col-tokens [data-c='{c}']")).perform()
    drawn = page.heatmap()
    assert (drawn["focusRow"], drawn["focusCol"]) == ("", str(c))
    lit = [float(t.get_attribute("data-weight")) for t in page.all("#row-tokens .tok")]
    assert lit == pytest.approx([row[c] for row in drawn["weights"]], abs=1e-9)

    # The word alignment: one line per pair of the API's alignment.
    status, api = call(server, "/attention", {"text": TWENTY_WORDS, "kind": "cross"})
    assert status == 200
    pairs = page.find("#alignment").get_attribute("data-pairs")
    assert pairs == " ".join(f"{s}-{t}" for s, t in api["alignment"])
    assert len(page.all("#alignment line")) == len(api["alignment"])


def test_keyboard_reaches_the_model_the_selectors_and_the_cells(page) -> None:
    from selenium.webdriver.common.keys import Keys

    page.open()
    page.type(SENTENCE)
    page.find("#text").send_keys(Keys.ENTER)
    page.wait(lambda d: page.find("#explorer").get_attribute("data-state") == "ready")
    heatmap = page.find("#heatmap")
    heatmap.send_keys(Keys.ARROW_DOWN, Keys.ARROW_RIGHT)
    drawn = page.heatmap()
    assert (drawn["focusRow"], drawn["focusCol"]) == ("1", "1")
    assert "\u2192" in page.find("#readout").text
    page.find("#row-tokens .tok").send_keys(Keys.ARROW_RIGHT)
    assert page.driver.switch_to.active_element.get_attribute("data-r") == "1"
    assert page.heatmap()["focusRow"] == "1"


def test_an_over_long_text_shows_the_servers_message(page) -> None:
    page.expected_errors.append("status of 413")  # the browser logs the failed fetch
    page.open()
    page.driver.execute_script(
        "const t = document.getElementById('text'); t.value = arguments[0];"
        "t.dispatchEvent(new Event('input'));",
        "word " * (MAX_CHARS // 5 + 1),
    )
    assert "over" in page.find("#count").get_attribute("class")
    page.find('button[data-task="translate"]').click()
    page.wait(lambda d: page.find("#error").text)
    message = page.find("#error").text
    assert message.startswith("Too long (HTTP 413):")
    assert f"at most {MAX_CHARS} are allowed" in message
    body = page.find("body").text
    assert "Traceback" not in body and "{" not in message
    assert page.find("#result").get_attribute("hidden") is not None
    # An empty text is caught on the page, before any request.
    page.type(" ")
    page.find('button[data-task="translate"]').click()
    assert page.find("#error").text == "Type a text first."


def test_a_422_reads_as_a_message(page) -> None:
    page.expected_errors.append("status of 422")
    page.open()
    message = page.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "api('/translate', {text: 'A dog.', beam: 0}).then(() => done('no error'),"
        " (e) => done(e.message));"
    )
    assert message.startswith("Not accepted (HTTP 422): beam:")


def test_summarize_shows_its_explorer(page, server) -> None:
    text = page_text = "Anna met Tom at the station at noon. They took the train to Paris."
    page.open()
    page.type(page_text)
    page.run("summarize")
    status, api = call(server, "/summarize", {"text": text})
    assert status == 200
    assert page.find("#output").text == api["output"]
    drawn = page.heatmap()
    assert drawn["kind"] == "cross"
    assert all(sum(row) == pytest.approx(1, abs=2e-3) for row in drawn["weights"])


def test_the_page_fits_a_phone(page) -> None:
    page.open(width=390)
    page.type(SENTENCE)
    page.run("translate")
    overflow = page.driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, "the page scrolls sideways at 390 px (only the heatmap may)"


# --- a whole file -------------------------------------------------------------------------

FILE_SENTENCES = [
    "A dog runs in the park.",
    "The red car is in the garden.",
    "A woman reads a book.",
    "The children play in the park.",
    "My white horse sits next to the street.",
]
MARKDOWN = """# A dog in the park

A dog runs in the park. The children play in the park.

- A woman reads a book.
- The red car is in the garden.

```python
print("A dog runs.")
```

A man sees [the red car](https://example.org/car "car") and `attn translate`.
"""


def subtitles(n: int) -> str:
    """An .srt of `n` cues: every third over two lines, every fourth in <i>...</i>."""
    cues = []
    for i in range(n):
        start, end = 2 * i, 2 * i + 1
        text = FILE_SENTENCES[i % len(FILE_SENTENCES)]
        if i % 3 == 1:
            words = text.split()
            text = " ".join(words[: len(words) // 2]) + "\n" + " ".join(words[len(words) // 2 :])
        if i % 4 == 2:
            text = f"<i>{text}</i>"
        timing = (
            f"00:{start // 60:02d}:{start % 60:02d},000 --> 00:{end // 60:02d}:{end % 60:02d},500"
        )
        cues.append(f"{i + 1}\n{timing}\n{text}\n")
    return "\n".join(cues)


def post_file(base: str, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """(status, the answer's JSON lines) of POST /translate/file (an error: [its object])."""
    req = urllib.request.Request(
        base + "/translate/file", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=300) as response:
            assert response.headers["Content-Type"] == "application/x-ndjson"
            return response.status, [json.loads(line) for line in response]
    except urllib.error.HTTPError as e:
        return e.code, [json.loads(e.read())]


def cue_blocks(text: str) -> list[list[str]]:
    """An .srt's cues as lists of lines (number, timing, text lines)."""
    return [block.split("\n") for block in text.strip("\n").split("\n\n")]


def test_a_file_is_translated_with_progress_lines(server) -> None:
    from attn.data.documents import parse

    source = subtitles(40)
    status, events = post_file(server, {"filename": "talk.srt", "content": source})
    assert status == 200
    start, *progress, done = events
    assert start == {"event": "start", "format": "srt", "parts": 40}
    # One line per chunk of parts, in order, up to all of them.
    assert [e["done"] for e in progress] == [32, 40]
    assert done["event"] == "done" and done["filename"].startswith("talk.")
    assert done["filename"].endswith(".srt")
    translated = parse(done["content"], "srt", "out.srt")  # the format's parser accepts it
    assert len(translated.units) == 40
    # The same cues: numbers, timings and each cue's number of lines; the text translated.
    before, after = cue_blocks(source), cue_blocks(done["content"])
    assert [b[:2] for b in after] == [b[:2] for b in before]
    assert [len(b) for b in after] == [len(b) for b in before]
    for old, new in zip(before, after, strict=True):
        assert new[2:] != old[2:]
        assert new[2].startswith("<i>") == old[2].startswith("<i>")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"filename": "bad.srt", "content": "1\nsoon --> later\nHello.\n"}, "bad.srt:2:"),
        ({"filename": "a.txt", "content": "A dog.", "format": "pdf"}, "unknown format 'pdf'"),
        ({"filename": "a.txt", "content": "A\x00dog."}, "a binary file"),
        ({"filename": "a.txt"}, "content: "),
    ],
)
def test_a_file_that_cannot_be_read_gets_a_422(server, body, message) -> None:
    status, [answer] = post_file(server, body)
    assert status == 422
    assert message in answer["error"]


def downloads_to(page: Page, folder: Path) -> None:
    page.driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)}
    )


def download(page: Page, folder: Path) -> tuple[str, str]:
    """Click the download link; (the file's name, its text) once it is saved."""
    before = set(folder.iterdir())
    page.find("#download").click()
    new = page.wait(
        lambda d: [p for p in set(folder.iterdir()) - before if p.suffix != ".crdownload"]
    )
    return new[0].name, new[0].read_text(encoding="utf-8")


def test_a_dropped_subtitle_file_comes_back_translated(page, server, tmp_path) -> None:
    page.open()
    downloads_to(page, tmp_path)
    source = subtitles(70)
    # Every progress bar the page draws, as it draws it.
    page.driver.execute_script(
        "window.bars = [];"
        "new MutationObserver((records) => records.forEach((r) => r.addedNodes.forEach((n) => {"
        "  if (n.tagName === 'PROGRESS') window.bars.push([n.value, n.max]);"
        "}))).observe(document.getElementById('file-status'), {childList: true});"
    )
    # What a drop from the desktop gives the page: a DataTransfer holding the file.
    page.driver.execute_script(
        "const dt = new DataTransfer();"
        "dt.items.add(new File([arguments[0]], 'talk.srt', {type: 'application/x-subrip'}));"
        "document.getElementById('drop').dispatchEvent("
        "  new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));",
        source,
    )
    page.wait(lambda d: page.find("#file-done").is_displayed())
    bars = page.driver.execute_script("return window.bars")
    assert [done for done, parts in bars if parts == 70] == [0, 32, 64, 70]
    name, text = download(page, tmp_path)
    status, events = post_file(server, {"filename": "talk.srt", "content": source})
    assert status == 200
    assert (name, text) == (events[-1]["filename"], events[-1]["content"])
    assert [b[:2] for b in cue_blocks(text)] == [b[:2] for b in cue_blocks(source)]
    assert page.find("#file-preview").text.startswith("1\n00:00:00,000 --> 00:00:01,500\n")
    assert page.find("#file-error").text == ""
    page.driver.save_screenshot(str(tmp_path / "file.png"))
    print(f"screenshot: {tmp_path / 'file.png'}")


def test_a_chosen_markdown_file_keeps_its_structure(page, server, tmp_path) -> None:
    page.open()
    downloads_to(page, tmp_path)
    path = tmp_path / "notes.md"
    path.write_text(MARKDOWN, encoding="utf-8")
    page.find("#file-input").send_keys(str(path))
    page.wait(lambda d: page.find("#file-done").is_displayed())
    name, text = download(page, tmp_path)
    status, events = post_file(server, {"filename": "notes.md", "content": MARKDOWN})
    assert status == 200
    assert (name, text) == (events[-1]["filename"], events[-1]["content"])
    assert name.endswith(".md") and events[0]["format"] == "markdown"
    code = MARKDOWN[MARKDOWN.index("```python") : MARKDOWN.index("```\n\nA man") + 4]
    assert code in text
    assert '(https://example.org/car "car")' in text and "`attn translate`" in text
    lines, source_lines = text.split("\n"), MARKDOWN.split("\n")
    assert len(lines) == len(source_lines)
    assert lines[0].startswith("# ") and lines[0] != source_lines[0]
    assert [line[:2] for line in lines if line.startswith("- ")] == ["- ", "- "]
    assert "A dog runs in the park." not in text


def test_a_binary_file_is_refused_on_the_page(page, tmp_path) -> None:
    page.open()
    path = tmp_path / "photo.srt"
    path.write_bytes(b"\xff\xd8\xff\xe0 not text")
    page.find("#file-input").send_keys(str(path))
    page.wait(lambda d: page.find("#file-error").text)
    assert "photo.srt is not a text file" in page.find("#file-error").text
    assert not page.find("#file-done").is_displayed()


# --- another site's page cannot use the server ---------------------------------------------

# A page of another origin (another local port) that tries the server's /translate twice: as
# a "simple request" (text/plain, which needs no preflight) and as JSON (preflighted), with
# the key in its address, if any. It writes what it got into <body data-...>.
FOREIGN_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body><script>
const q = new URLSearchParams(location.search);
const api = q.get("api"), key = q.get("key");
async function attempt(contentType) {
  const headers = {"Content-Type": contentType};
  if (key) headers.Authorization = "Bearer " + key;
  try {
    const r = await fetch(api + "/translate",
      {method: "POST", headers, body: JSON.stringify({text: "A dog runs.", beam: 1})});
    const data = await r.json();
    return r.ok ? "output:" + data.output : "status:" + r.status;
  } catch (e) {
    return "blocked";  // the browser hides the answer: no CORS headers on it
  }
}
(async () => {
  document.body.dataset.simple = await attempt("text/plain");
  document.body.dataset.json = await attempt("application/json");
  document.body.dataset.done = "yes";
})();
</script></body></html>
"""


@pytest.fixture(scope="module")
def foreign_site(tmp_path_factory) -> Iterator[str]:
    """A tiny http.server on another 127.0.0.1 port serving FOREIGN_PAGE; yields its origin."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path_factory.mktemp("foreign")
    (root / "probe.html").write_text(FOREIGN_PAGE, encoding="utf-8")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def probe_from(chrome: Any, site: str, api: str, key: str = "") -> dict[str, str]:
    """What FOREIGN_PAGE, opened at `site`, got from the server at `api`."""
    from selenium.webdriver.support.ui import WebDriverWait

    query = urllib.parse.urlencode({"api": api, "key": key})
    chrome.get(f"{site}/probe.html?{query}")
    WebDriverWait(chrome, 120, poll_frequency=0.05).until(
        lambda d: d.find_element("css selector", "body").get_attribute("data-done")
    )
    body = chrome.find_element("css selector", "body")
    result = {k: body.get_attribute(f"data-{k}") for k in ("simple", "json")}
    chrome.get_log("browser")  # the refused requests are logged there, as they should be
    return result


def test_another_sites_page_cannot_get_a_translation(chrome, server, foreign_site) -> None:
    assert probe_from(chrome, foreign_site, server) == {"simple": "blocked", "json": "blocked"}
    # The server refused them, not only the browser: the same requests over HTTP get 403.
    req = urllib.request.Request(
        server + "/translate",
        json.dumps({"text": "A dog runs."}).encode(),
        {"Content-Type": "text/plain", "Origin": foreign_site},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=60)
    assert refused.value.code == 403


@pytest.fixture(scope="module")
def open_server(translate_model, foreign_site, tmp_path_factory) -> Iterator[str]:
    """`attn serve` with an API key and --cors-origin for the foreign site."""
    keys = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys.write_text("page-key\n", encoding="utf-8")
    options = ("--cors-origin", foreign_site, "--api-key-file", str(keys))
    with attn_serve(translate_model, options=options) as base:
        yield base


def test_an_allowed_origin_gets_a_translation_as_json_only(chrome, open_server, foreign_site):
    got = probe_from(chrome, foreign_site, open_server, key="page-key")
    req = urllib.request.Request(
        open_server + "/translate",
        json.dumps({"text": "A dog runs.", "beam": 1}).encode(),
        {"Content-Type": "application/json", "Authorization": "Bearer page-key"},
    )
    with urllib.request.urlopen(req, timeout=120) as response:
        want = json.loads(response.read())["output"]
    # The JSON request is answered (CORS); the simple one still cannot start work.
    assert got == {"simple": "status:415", "json": f"output:{want}"}
    assert probe_from(chrome, foreign_site, open_server, key="wrong") == {
        "simple": "status:401",
        "json": "status:401",
    }


def test_the_page_asks_for_the_key_the_server_needs(chrome, open_server) -> None:
    page = Page(chrome, open_server)
    page.expected_errors.append("status of 401")
    chrome.get(open_server + "/")
    chrome.execute_script("sessionStorage.clear()")
    chrome.get(open_server + "/")
    page.wait(lambda d: page.find("#key-form").is_displayed())
    assert "401" in page.find("#models-empty").text
    page.find("#key").send_keys("page-key\n")
    page.wait(lambda d: page.all("#models input"))
    assert page.find("#key-form").get_attribute("hidden") is not None
    page.type(SENTENCE)
    page.run("translate")
    assert page.find("#output").text
    assert page.find("#error").text == ""
    assert chrome.execute_script("return sessionStorage.getItem('attn-api-key')") == "page-key"
    errors = page.console_errors()
    assert not errors, f"errors in the browser console: {errors}"


# --- the screenshots in docs/ --------------------------------------------------------------


def test_screenshots(chrome) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    model = os.environ.get("ATTN_SCREENSHOT_MODEL")
    if not model:
        pytest.skip("set ATTN_SCREENSHOT_MODEL=DIR (a translation model) to write docs/*.png")
    with attn_serve(Path(model), max_chars=None) as base:
        page = Page(chrome, base)
        chrome.get_log("browser")
        for width, name in ((1280, "serve-explorer.png"), (390, "serve-explorer-390.png")):
            page.open(width)
            page.type(SCREENSHOT_SENTENCE)
            page.run("translate")
            # Pin an output piece, as a tap would, so the picture shows the highlights; then
            # move the pointer away, so no tooltip covers them.
            pieces = page.all("#row-tokens .tok")
            chosen = [t for t in pieces if SCREENSHOT_PIECE in t.get_attribute("data-piece")]
            (chosen[0] if chosen else pieces[min(2, len(pieces) - 1)]).click()
            ActionChains(chrome).move_to_element(page.find("h1")).perform()
            height = page.driver.execute_script("return document.documentElement.scrollHeight")
            page.driver.execute_cdp_cmd(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
            )
            page.driver.save_screenshot(str(DOCS / name))
            print(f"wrote {DOCS / name} ({width} x {height})")
        errors = page.console_errors()
        assert not errors, f"errors in the browser console: {errors}"
