"""The README's screenshot of ``locdiff serve``: the demo's run answering a confirmation patch.

    python -m experiments.serve_screenshot [--run DIR] [--out docs/serve.png]

Starts the page on a free localhost port with the demo's LocDiff run (``make demo``
trains it), uploads one Blue Marble patch of the confirmation set (new centres no choice
has seen; the first coastal one) in headless Chromium (Debian's ``chromium`` and
``chromium-driver``) and saves the page as a PNG.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading

import numpy as np
from PIL import Image

from experiments.bluemarble import CONFIRM_SEED
from experiments.configs.bluemarble import get_config

RUN = "experiments/cache/bluemarble_runs_demo_0_far0.05/random_efficientnet-lite0/locdiff"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default=RUN)
    parser.add_argument("--out", default="docs/serve.png")
    parser.add_argument("--cache", default="experiments/cache")
    args = parser.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    from locdiff.settings import bluemarble as bm
    from locdiff.viz.serve import serve

    config = get_config("demo")
    confirm = bm.build_dataset(
        args.cache, n_land=config.confirm_land, n_ocean=config.confirm_ocean, seed=CONFIRM_SEED
    )
    i = int(np.flatnonzero(confirm["kind"] == bm.KINDS.index("coast"))[0])
    urls = []
    threading.Thread(
        target=serve, args=(args.run,), kwargs={"port": 0, "ready": urls.append}, daemon=True
    ).start()
    for _ in range(600):  # the run loads in seconds; a bad --run never serves
        if urls:
            break
        threading.Event().wait(0.2)
    else:
        raise SystemExit(f"the page for {args.run} did not start within 2 minutes")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--window-size=1250,1250"):
        options.add_argument(flag)
    browser = webdriver.Chrome(
        service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            patch = os.path.join(tmp, f"patch_{i}.png")
            Image.fromarray(confirm["patches"][i]).save(patch)
            browser.get(urls[0])
            browser.find_element(By.ID, "photo").send_keys(patch)
            browser.find_element(By.ID, "locate").click()
            WebDriverWait(browser, 300).until(ready.presence_of_element_located((By.ID, "map")))
        browser.save_screenshot(args.out)
    finally:
        browser.quit()
    lat, lon = confirm["latlon"][i]
    print(f"wrote {args.out}: patch {i} of the confirmation set, centred at ({lat:.2f}, {lon:.2f})")


if __name__ == "__main__":
    main()
