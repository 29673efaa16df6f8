"""``locdiff serve``: the page's answers, its errors, and the page in a real browser."""

import io
import json
import select
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from locdiff import methods
from locdiff.data import datasets as data
from locdiff.encoders import ColorStatsEncoder
from locdiff.errors import RunError
from locdiff.viz.serve import App, BadRequest

COLOURS = {
    (40.0, -100.0): (200, 40, 40),
    (-20.0, 30.0): (40, 200, 40),
    (50.0, 100.0): (40, 40, 200),
}


def photo(colour, *, seed: int = 0, size: int = 16) -> Image.Image:
    noise = np.random.default_rng(seed).integers(-20, 20, (size, size, 3))
    return Image.fromarray(np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8))


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny LocDiff trained on colour statistics of photos whose colour says where they
    were taken (three places), its data naming the ``color-stats`` encoder."""
    from locdiff.config import Config, override

    root = tmp_path_factory.mktemp("serve")
    rng = np.random.default_rng(0)
    places = list(COLOURS)
    which = rng.integers(0, len(places), 600)
    latlon = np.array(places)[which] + rng.normal(0, 1.0, (600, 2))
    images = [photo(COLOURS[places[k]], seed=i) for i, k in enumerate(which)]
    emb = ColorStatsEncoder().embed(images)
    path = str(root / "train.npz")
    data.save_npz(path, emb, latlon, encoder=np.array("color-stats"))
    config = override(
        Config(),
        **{"model.L": 6, "model.hidden": 32, "model.depth": 1, "model.film_dim": 16},
        **{"model.time_dim": 8, "train.steps": 150, "train.batch_size": 64},
        **{"train.learning_rate": 3e-3, "train.warmup_steps": 10, "train.eval_every": 50},
        **{"diffusion.sample_steps": 5, "diffusion.num_samples": 2},
    )
    workdir = str(root / "run")
    methods.train_method("locdiff", path, workdir, config=config, progress=False)
    return workdir


def test_the_app_answers_a_photo_and_the_prior(run):
    app = App(run, top_k=3)
    result = app.predict_image(png_bytes(photo((200, 40, 40), seed=99)), "red.png")
    assert len(result["rows"]) == 3 and result["png"][:4] == b"\x89PNG"
    assert result["rows"][0][3] > 0  # the first mode's mass
    from shapely.geometry import shape

    features = json.loads(result["geojson"])["features"]
    regions = [shape(f["geometry"]) for f in features if f["geometry"]["type"] == "MultiPolygon"]
    assert len(regions) == 2 and all(r.is_valid for r in regions)
    assert app.results[result["id"]] is result
    prior = app.prior(48.85, 2.35)
    assert "credible level" in prior["title"] and len(prior["rows"]) == 3


def test_the_app_refuses_what_it_cannot_answer(run, clusters, tmp_path):
    app = App(run, max_bytes=50_000)
    with pytest.raises(BadRequest, match="not an image") as caught:
        app.predict_image(b"just some text\n", "notes.txt")
    assert caught.value.status == 400
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), np.uint8))
    with pytest.raises(BadRequest, match="the limit is") as caught:
        app.predict_image(png_bytes(big), "big.png")
    assert caught.value.status == 413
    with pytest.raises(BadRequest, match="not on the globe"):
        app.prior(95.0, 0.0)
    # a run whose data name no image encoder can show its prior, not embed a photo
    workdir = str(tmp_path / "no-encoder")
    from locdiff.config import Config, override

    tiny = override(Config(), **{"model.L": 4, "model.hidden": 16, "model.depth": 1},
                    **{"model.film_dim": 8, "model.time_dim": 4, "train.steps": 4},
                    **{"train.validation_fraction": 0.0, "diffusion.sample_steps": 2})  # fmt: skip
    with pytest.warns(UserWarning, match="calibrated"):  # not calibrated: no validation rows
        methods.train_method("locdiff", clusters.train, workdir, config=tiny, progress=False)
        plain = App(workdir)
    with pytest.raises(BadRequest, match="name no image encoder") as caught:
        plain.predict_image(png_bytes(photo((1, 2, 3))), "x.png")
    assert caught.value.status == 422
    retrieval = str(tmp_path / "retrieval")
    methods.train_method("retrieval", clusters.train, retrieval, progress=False)
    with pytest.raises(RunError, match="locdiff serve needs a LocDiff run"):
        App(retrieval)


def _chromium():
    """A headless Chromium driven by Selenium (Debian's chromium and chromium-driver)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture
def server(run, subprocess_env):
    """``locdiff serve`` on a free localhost port, as a user starts it; its URL."""
    command = [sys.executable, "-m", "locdiff.cli", "serve", "--checkpoint", run, "--port", "0"]
    command += ["--max-mb", "0.1"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env
    )
    try:
        started, _, _ = select.select([process.stdout], [], [], 180)
        line = process.stdout.readline() if started else ""
        # "LocDiff serving RUN at URL (Ctrl-C stops)"
        assert " at http://127.0.0.1:" in line, line or process.stderr.read()[-3000:]
        yield line.split(" at ")[1].split()[0]
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()


def test_the_page_in_a_browser(server, tmp_path):
    """Upload a photo in headless Chromium: the table, the map and the GeoJSON download;
    then a text file: a clear message, and the server keeps serving."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _chromium()
    try:
        browser.get(server)
        upload = tmp_path / "blue.png"
        photo((40, 40, 200), seed=5).save(upload)
        browser.find_element(By.ID, "photo").send_keys(str(upload))
        browser.find_element(By.ID, "locate").click()
        WebDriverWait(browser, 120).until(ready.presence_of_element_located((By.ID, "modes")))
        rows = browser.find_elements(By.CSS_SELECTOR, "#modes tr")
        assert len(rows) == 1 + 5  # the header and the top-5 modes
        assert rows[1].find_elements(By.TAG_NAME, "td")[0].text == "1"
        image = browser.find_element(By.ID, "map")
        assert browser.execute_script("return arguments[0].naturalWidth", image) > 500
        link = browser.find_element(By.ID, "geojson").get_attribute("href")
        with urllib.request.urlopen(link) as response:
            assert response.headers["Content-Type"] == "application/geo+json"
            collection = json.load(response)
        kinds = [f["geometry"]["type"] for f in collection["features"]]
        assert kinds.count("Point") == 5 and kinds.count("MultiPolygon") == 2
        # a text file: the page says what is wrong, and the next upload still works
        text = tmp_path / "notes.txt"
        text.write_text("not a photo\n")
        browser.find_element(By.ID, "photo").send_keys(str(text))
        browser.find_element(By.ID, "locate").click()
        WebDriverWait(browser, 60).until(ready.presence_of_element_located((By.ID, "error")))
        assert "notes.txt is not an image" in browser.find_element(By.ID, "error").text
        browser.find_element(By.ID, "lat").send_keys("48.85")
        browser.find_element(By.ID, "lon").send_keys("2.35")
        browser.find_element(By.ID, "show-prior").click()
        WebDriverWait(browser, 120).until(ready.presence_of_element_located((By.ID, "modes")))
        assert "the prior" in browser.find_element(By.ID, "title").text
    finally:
        browser.quit()
    # over HTTP: an upload over the limit (0.1 MB here) and a bad Content-Length get a
    # page that says so, and the server goes on answering
    big = b"--x\r\nContent-Disposition: form-data; name=photo; filename=big.png\r\n\r\n"
    big += b"0" * 300_000 + b"\r\n--x--\r\n"
    request = urllib.request.Request(server + "predict", data=big, method="POST")
    request.add_header("Content-Type", "multipart/form-data; boundary=x")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 413 and "the limit is 0.1 MB" in caught.value.read().decode()
    with urllib.request.urlopen(server) as response:
        assert response.status == 200


def test_the_explorer_takes_an_image_file(run, tmp_path):
    """An explorer input may be an image file, embedded with the run's encoder (once)."""
    pytest.importorskip("ipywidgets")
    pytest.importorskip("plotly")
    from locdiff.viz.explore import Explorer

    path = tmp_path / "red.png"
    photo((200, 40, 40), seed=7).save(path)
    explorer = Explorer(methods.load_locator(run), {"red.png": str(path)}, top_k=2)
    assert explorer.prediction.latlon.shape == (1, 2, 2)
    assert (
        explorer.figure.data[-1].name == "modes" and "red.png" in explorer.figure.layout.title.text
    )
    embedded = explorer._embedded["red.png"]
    np.testing.assert_allclose(embedded, ColorStatsEncoder().embed([Image.open(path)]), atol=1e-6)
