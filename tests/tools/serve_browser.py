"""Drive the demo page in headless Chromium (Debian's `chromium` and `chromium-driver`, through Selenium): upload
an image, read both captions, generate text, take a screenshot. The end-to-end test and docs/serve.png use it.
Needs the dev extra (selenium) and `make browser`.

    python tests/tools/serve_browser.py --url http://127.0.0.1:8000 --image some.jpg --out docs/serve.png
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CELLS = [f"cap-{model}-{strategy}" for model in ("supervised", "scst") for strategy in ("greedy", "beam")]


def headless_chromium(width: int = 1100, height: int = 1300) -> webdriver.Chrome:
    """Chromium at /usr/bin/chromium through /usr/bin/chromedriver (nothing downloaded), headless."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


def _wait_state(driver: webdriver.Chrome, element_id: str, states: tuple[str, ...], timeout: float) -> str:
    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.ID, element_id).get_attribute("data-state") in states)
    return driver.find_element(By.ID, element_id).get_attribute("data-state")


def caption_in_page(driver: webdriver.Chrome, image: Path, timeout: float = 60) -> dict[str, str]:
    """Upload `image` through the page's file input; the four captions it shows ({"cap-supervised-greedy": ..}),
    or {"error": message} if the page shows one."""
    driver.execute_script("document.getElementById('caption-results').dataset.state = 'idle';")
    driver.find_element(By.ID, "file").send_keys(str(Path(image).resolve()))
    if _wait_state(driver, "caption-results", ("done", "error"), timeout) == "error":
        return {"error": driver.find_element(By.ID, "caption-error").text}
    return {cell: driver.find_element(By.ID, cell).text for cell in CELLS}


def word_map_in_page(driver: webdriver.Chrome, cell: str, index: int) -> dict[str, str]:
    """Click word `index` of caption `cell` (e.g. "cap-supervised-greedy"); the map and label the page then shows."""
    driver.find_elements(By.CSS_SELECTOR, f"#{cell} .word")[index].click()
    return {"png": driver.find_element(By.ID, "word-map").get_attribute("src"),
            "label": driver.find_element(By.ID, "word-label").text}


def generate_in_page(driver: webdriver.Chrome, prompt: str, length: int, temperature: float | None = None,
                     timeout: float = 60) -> dict[str, str]:
    """Fill in the text panel and press Generate; {"prompt": .., "text": .., "status": ..} once the stream ends,
    or {"error": message} if the page shows one."""
    field = driver.find_element(By.ID, "prompt")
    field.clear()
    field.send_keys(prompt)
    driver.execute_script("document.getElementById('length').value = arguments[0];", length)
    if temperature is not None:
        driver.execute_script("const t = document.getElementById('temperature'); t.value = arguments[0];"
                              "t.dispatchEvent(new Event('input'));", temperature)
    driver.execute_script("document.getElementById('gen-status').dataset.state = 'idle';")
    driver.find_element(By.ID, "generate").click()
    if _wait_state(driver, "gen-status", ("done", "error"), timeout) == "error":
        return {"error": driver.find_element(By.ID, "gen-error").text}
    # textContent: the text exactly as streamed (.text would trim trailing whitespace)
    return {name: driver.find_element(By.ID, f"gen-{name}").get_attribute("textContent")
            for name in ("prompt", "text", "status")}


def resources(driver: webdriver.Chrome) -> list[str]:
    """Every URL the page has loaded (scripts, styles, images, fetches)."""
    return driver.execute_script("return [location.href].concat("
                                 "performance.getEntriesByType('resource').map(e => e.name));")


def screenshot(driver: webdriver.Chrome, path: Path, width: int = 1100, colors: int = 128) -> Path:
    """The whole page as a small PNG (window grown to the page's height, palette of `colors`)."""
    driver.set_window_size(width, 400)  # the page's own height, not the window's
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(width, height + 20)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.quantize(colors).save(path, optimize=True)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="caption an image and generate text in the demo page; screenshot it")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--image", required=True)
    p.add_argument("--prompt", default="ROMEO:")
    p.add_argument("--length", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--out", default="docs/serve.png")
    args = p.parse_args(argv)
    driver = headless_chromium()
    try:
        driver.get(args.url)
        print(caption_in_page(driver, Path(args.image)))
        print(generate_in_page(driver, args.prompt, args.length, args.temperature))
        print("screenshot:", screenshot(driver, Path(args.out)))
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
