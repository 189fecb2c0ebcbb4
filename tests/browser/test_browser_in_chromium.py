"""The static feature browser in a real browser (Debian's chromium through its
chromedriver, headless), opened from disk as a user opens it: search, sort, a
feature's page with its highlights, a feature without a page; no console error."""

import time

import pytest

from helpers import chromium, have_chromium
from test_pages import planted_site_inputs

pytestmark = pytest.mark.skipif(not have_chromium(), reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")


@pytest.fixture(scope="module")
def driver():
    d = chromium(1300, 1000)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    import numpy as np

    from sae_workbench.browser.pages import feature_pages
    from sae_workbench.browser.site import write_site

    ft, table, W_dec = planted_site_inputs()
    pages, index = feature_pages(ft, table, W_dec, np.random.default_rng(0), specialists={"python": 10})
    out = write_site(tmp_path_factory.mktemp("browser"), "blocks.0.hook_resid_post", pages, index, table.texts,
                     {"model": "planted", "sae_source": "custom", "d_sae": ft.d_sae, "n_tokens": ft.n_rows, "n_texts": len(table.texts)})
    return {p.feature: p for p in pages}, out


def severe(driver) -> list:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def rows(driver) -> list[int]:
    from selenium.webdriver.common.by import By

    return [int(r.get_attribute("data-feature")) for r in driver.find_elements(By.CSS_SELECTOR, "#features tbody tr")]


def test_index_searches_by_id_and_by_text_and_sorts(driver, site):
    from selenium.webdriver.common.by import By

    pages, out = site
    driver.get((out / "index.html").as_uri())
    assert sorted(rows(driver)) == sorted(pages)
    dens = [pages[f].density for f in rows(driver)]
    assert dens == sorted(dens, reverse=True)  # densest first
    box = driver.find_element(By.ID, "search")
    box.send_keys("13")
    assert rows(driver) == [13]
    box.clear()
    box.send_keys("mat2w")  # a token of math texts: feature 12 (math) fires on it, and the random features
    found = rows(driver)
    assert 12 in found and 10 not in found
    box.clear()
    box.send_keys("no token looks like this")
    assert rows(driver) == [] and "0 features" in driver.find_element(By.ID, "count").text
    box.clear()
    driver.find_element(By.CSS_SELECTOR, 'th[data-key="max_act"]').click()
    maxes = [pages[f].max_act for f in rows(driver)]
    assert maxes == sorted(maxes, reverse=True)
    assert severe(driver) == []


def test_a_feature_page_shows_every_context_token_with_its_value(driver, site):
    from selenium.webdriver.common.by import By

    pages, out = site
    p = pages[12]
    t = time.perf_counter()
    driver.get((out / "feature.html").as_uri() + "#12")
    spans = driver.find_elements(By.CSS_SELECTOR, "#contexts .tokhl .tok")
    opened = time.perf_counter() - t
    contexts = p.top + [c for b in p.bands for c in b["contexts"]]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#contexts .tokhl")) == len(contexts)
    assert len(spans) == sum(len(c.pieces) for c in contexts)
    values = [float(s.get_attribute("data-act")) for s in spans]
    assert values == pytest.approx([v for c in contexts for v in c.values], abs=0.006)
    assert [s.text.strip() for s in spans[: len(p.top[0].pieces)]] == [x.strip() for x in p.top[0].pieces]
    assert "math" in driver.find_element(By.CSS_SELECTOR, "#contexts .tokhl .meta").text
    assert "Feature 12" in driver.find_element(By.TAG_NAME, "h2").text
    assert opened < 5  # the bench measures it properly; this only catches a page that hangs
    # a neighbour's link opens its page in place
    driver.find_element(By.CSS_SELECTOR, ".card a[href^='#']").click()
    assert "Feature 12" not in driver.find_element(By.TAG_NAME, "h2").text
    assert severe(driver) == []


def test_a_hostile_text_renders_as_text_and_a_dead_feature_says_so(driver, site):
    from selenium.webdriver.common.by import By

    pages, out = site
    driver.get((out / "feature.html").as_uri() + "#10")
    assert "</script><b>x</b>" in driver.find_element(By.ID, "contexts").text
    assert not driver.find_elements(By.CSS_SELECTOR, "#contexts b")
    driver.get((out / "feature.html").as_uri() + "#5")
    assert "has no page" in driver.find_element(By.CSS_SELECTOR, ".error").text
    driver.get((out / "feature.html").as_uri() + "#99999")
    assert "has no page" in driver.find_element(By.CSS_SELECTOR, ".error").text
    assert severe(driver) == []  # no request for a data file that does not exist
