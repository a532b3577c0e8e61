"""End to end: `streamlit run app.py` served on localhost and loaded in headless Chromium.

AppTest runs the script without a browser; this proves the real server starts, reads the
`--db` given after `--`, and that the leaderboard table reaches the page.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.leaderboard_fixtures import METHODS, build_fixture_database

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SPEEDUP = re.compile(r"\b\d+\.\d{2}x\b")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_healthy(server: subprocess.Popen, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer on port {port} within {timeout:.0f}s")


@pytest.fixture
def served_app(tmp_path):
    """The app on a free localhost port over a fresh fixture database; always stopped."""
    fixture = build_fixture_database(tmp_path / "leaderboard.db")
    port = _free_port()
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    env.pop("SDBENCH_DB", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--", "--db", fixture.url],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _wait_until_healthy(server, port)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def chromium(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update",
                 "--disable-sync", "--window-size=1600,1400",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_served_leaderboard_shows_methods_and_speedups(served_app, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chromium.get(served_app)

    def table_text(driver):
        # The sortable table draws on a canvas; its cells are also in the page as an
        # accessible (visually hidden) grid, which is what is read here.
        tables = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')
        text = tables[0].get_attribute("textContent") if tables else ""
        return text if METHODS[0] in text else False

    text = WebDriverWait(chromium, 90).until(table_text)
    time.sleep(2)  # let the charts of the other tabs settle before the picture
    screenshot = tmp_path / "leaderboard.png"
    chromium.save_screenshot(str(screenshot))
    if os.environ.get("SCREENSHOT_DIR"):
        Path(os.environ["SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(os.environ["SCREENSHOT_DIR"]) / screenshot.name)

    for method in METHODS:
        assert method in text
    assert SPEEDUP.search(text), f"no speedup like 2.14x in the table:\n{text}"
    assert "lossless" in text
    assert screenshot.stat().st_size > 10_000


def test_served_drill_down_shows_the_question_and_the_tokens_as_text(served_app, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.leaderboard_fixtures import question_text

    chromium.set_window_size(1500, 1300)
    chromium.get(served_app)

    def drill_tab(driver):
        tabs = [t for t in driver.find_elements(By.CSS_SELECTOR, '[role="tab"]')
                if "drill-down" in t.text]
        return tabs[0] if tabs else False

    WebDriverWait(chromium, 90).until(drill_tab).click()

    def question_and_tokens(driver):
        questions = [q for q in driver.find_elements(By.CSS_SELECTOR, "div.question") if q.is_displayed()]
        tokens = driver.find_elements(By.CSS_SELECTOR, "span.step span.token")
        return (questions, tokens) if questions and tokens else False

    questions, tokens = WebDriverWait(chromium, 60).until(question_and_tokens)
    # The first listed question of the first row (eagle2): its text as written, markup and all.
    assert questions[0].text == question_text("81", "writing")
    first = tokens[0]
    assert first.text == "Answer" and re.fullmatch(r"step 1: 5 token\(s\) · id \d+", first.get_attribute("title"))
    text = "".join(t.get_attribute("textContent") for t in tokens)
    assert text.startswith("Answer to question 81: the quick brown fox")

    time.sleep(2)  # let the page settle before the picture
    # The question near the top of the picture, with the line that introduces it in view.
    chromium.execute_script("""
        const question = arguments[0];
        let pane = question.parentElement;
        while (pane && !(['auto', 'scroll'].includes(getComputedStyle(pane).overflowY)
                         && pane.scrollHeight > pane.clientHeight)) pane = pane.parentElement;
        pane = pane || document.scrollingElement;
        pane.scrollTop += question.getBoundingClientRect().top - pane.getBoundingClientRect().top - 110;
        """, questions[0])
    time.sleep(1)
    screenshot = tmp_path / "leaderboard-drill-down.png"
    chromium.save_screenshot(str(screenshot))
    if os.environ.get("SCREENSHOT_DIR"):
        Path(os.environ["SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(os.environ["SCREENSHOT_DIR"]) / screenshot.name)
    assert screenshot.stat().st_size > 10_000
