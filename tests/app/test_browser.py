"""The app in a real browser (Debian's chromium and chromium-driver, through selenium):
open the page, type a prompt, check one highlighted span per token, each with its
value, run a steering request and read both continuations; any SEVERE entry in the
browser's console fails the test."""

from __future__ import annotations

import pytest

from app_server import SPECIALIST, call
from helpers import chromium, have_chromium

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not have_chromium(), reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)")]

PROMPT = "import numpy as np\nprint(np.sqrt(2))  # see https://numpy.org"


def test_the_page_highlights_a_prompt_and_steers(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, expected = call(server, "/api/prompt", {"prompt": PROMPT})
    driver = chromium()
    try:
        driver.get(server + "/")
        wait = WebDriverWait(driver, 300)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        box = driver.find_element(By.ID, "prompt")
        box.clear()
        box.send_keys(PROMPT)
        driver.find_element(By.ID, "show").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#highlight .tok"))
        spans = driver.find_elements(By.CSS_SELECTOR, "#highlight .tok")
        assert len(spans) == expected["n_tokens"] == len([t for t in expected["tokens"] if not t["special"]])
        for s in spans:
            act = float(s.get_attribute("data-act"))
            assert act >= 0 and float(s.get_attribute("title")) == pytest.approx(act, abs=1e-3)
        assert max(float(s.get_attribute("data-act")) for s in spans) == pytest.approx(expected["features"][0]["max"], abs=1e-3)
        rows = driver.find_elements(By.CSS_SELECTOR, "#tokens tr")
        assert len(rows) == 1 + expected["n_tokens"]  # header + one row of top features per token
        chips = driver.find_elements(By.CSS_SELECTOR, "#features .feat")
        assert len(chips) == len(expected["features"])
        chips[1].find_element(By.TAG_NAME, "button").click()  # a feature chosen in the list goes to the playground
        assert driver.find_element(By.ID, "feature").get_attribute("value") == str(expected["features"][1]["feature"])

        for field, value in (("feature", SPECIALIST), ("coefficient", 50), ("tokens-n", 6)):
            e = driver.find_element(By.ID, field)
            e.clear()
            e.send_keys(str(value))
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_element(By.ID, "steered").text.strip() or d.find_element(By.ID, "steer-error").text)
        assert driver.find_element(By.ID, "steer-error").text == ""
        unsteered, steered = driver.find_element(By.ID, "unsteered").text, driver.find_element(By.ID, "steered").text
        assert unsteered.startswith("The weather today is") and steered.startswith("The weather today is")
        assert len(unsteered) > len("The weather today is") and len(steered) > len("The weather today is")
        table = driver.find_element(By.ID, "measures").text
        assert "judge: P(python)" in table and "perplexity" in table and "concept score" in table
        driver.save_screenshot(str(tmp_path / "app.png"))
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
    finally:
        driver.quit()
