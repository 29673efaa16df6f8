"""``locdiff serve --checkpoint RUN``: a page on localhost to geolocate a photo.

A user drops a photo (embedded with the encoder the run's training data were embedded
with) and gets the top-k table (mass, nearest place), the probability map with its 50% /
90% credible regions (:func:`locdiff.viz.plots.plot_prediction`) and a GeoJSON download of
the modes and regions (:func:`locdiff.io.export.write_geojson`). Or pastes coordinates for a
condition-free look at the prior: the run's unconditional model (guidance 0, its learned
null condition), with the point marked and its credible level under the prior.

The server is the standard library's threading HTTP server, on ``127.0.0.1`` by default;
predictions run one at a time. A bad request (not an image, too large, a run without an
image encoder, coordinates off the globe) gets a page that says so, with status 4xx, and
the server keeps serving. Results are kept in memory (the last ``KEEP_RESULTS``).
"""

from __future__ import annotations

import base64
import collections
import html
import io
import json
import os
import tempfile
import threading
import uuid
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from locdiff.errors import RunError

MAX_UPLOAD_BYTES = 10 * 2**20
KEEP_RESULTS = 32
RESOLUTION_DEG = 1.0


class BadRequest(ValueError):
    """What the user sent cannot be answered; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class App:
    """What the pages do, without HTTP: ``predict_image(bytes)`` and ``prior(lat, lon)``
    each return a result ``{"id", "title", "rows", "png", "geojson"}`` kept by id."""

    def __init__(self, checkpoint: str, *, top_k: int = 5, max_bytes: int = MAX_UPLOAD_BYTES):
        from locdiff.methods import load_locator
        from locdiff.viz.places import default_index

        self.locator = load_locator(checkpoint)
        if getattr(self.locator, "geolocator", None) is None:  # maps and the prior: LocDiff's
            raise RunError(
                f"{checkpoint}: a {self.locator.method} run; locdiff serve needs a LocDiff "
                "run (its maps, modes and prior)"
            )
        self.checkpoint, self.top_k, self.max_bytes = checkpoint, top_k, max_bytes
        self.encoder_spec = self.locator.meta.get("encoder")
        self.places = default_index()
        self.results: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._encoder = None
        self._lock = threading.Lock()  # one prediction at a time

    def predict_image(self, data: bytes, filename: str = "upload") -> dict:
        from locdiff.encoders.embed import embed_files

        if len(data) > self.max_bytes:
            raise BadRequest(
                f"{filename} is {_mb(len(data))}; the limit is {_mb(self.max_bytes)}", 413
            )
        thumbnail = _decoded(data, filename)
        if self.encoder_spec is None:
            raise BadRequest(
                f"this run ({self.checkpoint}) was trained on embeddings that name no image "
                "encoder, so it cannot embed a photo; embed it with `locdiff embed` and use "
                "`locdiff predict --data`, or paste coordinates for the prior",
                422,
            )
        with self._lock:
            if self._encoder is None:
                from locdiff.encoders import load_encoder

                self._encoder = load_encoder(self.encoder_spec)
            with tempfile.TemporaryDirectory() as tmp:  # embed_files reads files
                path = os.path.join(tmp, "upload" + os.path.splitext(filename)[1].lower())
                with open(path, "wb") as f:
                    f.write(data)
                embedding = embed_files([path], self._encoder)
            prediction = self.locator.predict(
                embedding, top_k=self.top_k, maps=True, map_resolution=RESOLUTION_DEG
            )
            return self._keep(prediction, title=html.escape(filename), inset=thumbnail)

    def prior(self, lat: float, lon: float) -> dict:
        """The run's prior (its unconditional model) with ``(lat, lon)`` marked."""
        import shdd

        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise BadRequest(
                f"({lat}, {lon}) is not on the globe: lat in [-90, 90], lon in [-180, 180]"
            )
        with self._lock:
            condition = np.zeros((1, self.locator.embed_dim), np.float32)  # ignored at w = 0
            prediction = self.locator.geolocator.predict(
                condition, top_k=self.top_k, maps=True, map_resolution=RESOLUTION_DEG, guidance=0.0
            )
            point = np.array([[lat, lon]])
            level = shdd.credible_level(prediction.maps, point, resolution_deg=RESOLUTION_DEG)[0]
            title = f"the prior, with ({lat:.4g}, {lon:.4g}) at credible level {level:.2f}"
            return self._keep(prediction, title=title, truth=point[0])

    def _keep(self, prediction, *, title: str, truth=None, inset=None) -> dict:
        from locdiff.io import export
        from locdiff.viz.plots import plot_prediction

        result_id = uuid.uuid4().hex[:12]
        fig = plot_prediction(prediction, 0, resolution_deg=RESOLUTION_DEG, places=self.places,
                              truth=truth, truth_label="the point", title="",
                              inset=inset)  # fmt: skip
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=90, bbox_inches="tight")
        labels = None if self.places is None else self.places.label(prediction.latlon)
        collection = export.geojson(prediction, [result_id], labels, resolution_deg=RESOLUTION_DEG)
        rows = [
            (r + 1, float(lat), float(lon), float(prediction.prob[0, r]),
             "" if labels is None else str(labels[0, r]))
            for r, (lat, lon) in enumerate(prediction.latlon[0])
        ]  # fmt: skip
        geojson = json.dumps(collection)
        result = {"id": result_id, "title": title, "rows": rows, "png": png.getvalue()}
        result |= {"geojson": geojson, "areas": prediction.credible_km2[0].tolist()}
        self.results[result_id] = result
        while len(self.results) > KEEP_RESULTS:
            self.results.popitem(last=False)
        return result


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def _decoded(data: bytes, filename: str, size: int = 160) -> np.ndarray:
    """The uploaded photo decoded in full (so that a truncated file or a decompression
    bomb is refused before any prediction), as an RGB thumbnail at most ``size`` pixels
    a side (the map's inset)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = image.convert("RGB")
            image.thumbnail((size, size))
            return np.asarray(image)
    except Image.DecompressionBombError as e:
        raise BadRequest(f"{filename} has too many pixels ({e})", 413) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BadRequest(f"{filename} is not an image this server can read ({e})") from None


# ---------------------------------------------------------------------------- pages

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #ddd}
.error{background:#fde8e8;border:1px solid #e0a0a0;padding:.8em;border-radius:4px}
form{margin:1em 0;padding:1em;border:1px solid #ddd;border-radius:4px}
img{max-width:100%}"""


def page(body: str, *, title: str = "LocDiff") -> bytes:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{STYLE}</style></head><body><h1>LocDiff</h1>{body}{FORMS}</body></html>"
    ).encode()


FORMS = """
<form id="photo-form" action="/predict" method="post" enctype="multipart/form-data">
  <label>A photo: <input id="photo" type="file" name="photo" accept="image/*"></label>
  <button id="locate" type="submit">Where was it taken?</button>
</form>
<form id="prior-form" action="/prior" method="post">
  <label>Or a point, to see it under the run's prior:
  lat <input id="lat" name="lat" size="8"> lon <input id="lon" name="lon" size="8"></label>
  <button id="show-prior" type="submit">Show the prior</button>
</form>"""


def result_page(result: dict) -> bytes:
    rows = "".join(
        f"<tr><td>{rank}</td><td>{lat:.4f}</td><td>{lon:.4f}</td><td>{100 * prob:.1f}%</td>"
        f"<td>{html.escape(place)}</td></tr>"
        for rank, lat, lon, prob, place in result["rows"]
    )
    a50, a90 = result["areas"]
    image = base64.b64encode(result["png"]).decode()
    body = (
        f"<h2 id='title'>{result['title']}</h2>"
        "<table id='modes'><tr><th>rank</th><th>lat</th><th>lon</th><th>mass</th>"
        f"<th>nearest place</th></tr>{rows}</table>"
        f"<p id='areas'>50% credible region: {a50 / 1e6:.3g} M km²; 90%: {a90 / 1e6:.3g} M km²</p>"
        f"<p><a id='geojson' href='/result/{result['id']}.geojson' download>"
        "Download the modes and regions (GeoJSON)</a></p>"
        f"<img id='map' alt='probability map' src='data:image/png;base64,{image}'>"
    )
    return page(body)


def error_page(message: str) -> bytes:
    return page(f"<p class='error' id='error'>{html.escape(message)}</p>")


def read_form(headers, rfile, max_bytes: int) -> dict[str, tuple[str | None, bytes]]:
    """``{name: (filename, bytes)}`` of a urlencoded or multipart form; a body over the
    limit is read and dropped (a 413, not a broken connection)."""
    try:
        length = int(headers.get("Content-Length") or 0)
    except ValueError:
        raise BadRequest("the request's Content-Length is not a number") from None
    if length < 0:
        raise BadRequest("the request's Content-Length is negative")
    if length > max_bytes + 2**16:
        remaining = length  # read and dropped, up to what the client sends
        while remaining > 0:
            chunk = rfile.read(min(remaining, 2**20))
            if not chunk:
                break
            remaining -= len(chunk)
        raise BadRequest(f"the upload is {_mb(length)}; the limit is {_mb(max_bytes)}", 413)
    body = rfile.read(length)
    kind = headers.get("Content-Type", "")
    if kind.startswith("application/x-www-form-urlencoded"):
        from urllib.parse import parse_qs

        parsed = parse_qs(body.decode(), keep_blank_values=True)
        return {k: (None, v[0].encode()) for k, v in parsed.items()}
    if not kind.startswith("multipart/form-data"):
        raise BadRequest(f"a form was expected, not {kind or 'no content type'}")
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + kind.encode() + b"\r\n\r\n" + body
    )
    return {
        part.get_param("name", header="content-disposition"): (
            part.get_filename(),
            part.get_payload(decode=True) or b"",
        )
        for part in message.iter_parts()
    }


def answer_form(app: App, path: str, fields: dict) -> dict | None:
    """The result of a form posted to ``path`` (None: nothing there)."""
    if path == "/predict":
        photo = fields.get("photo")
        if not photo or not photo[1]:
            raise BadRequest("no photo was sent: choose a file first")
        return app.predict_image(photo[1], photo[0] or "upload")
    if path == "/prior":
        try:
            lat, lon = (float(fields[k][1].decode().strip()) for k in ("lat", "lon"))
        except (KeyError, ValueError):
            raise BadRequest("lat and lon must be numbers (degrees)") from None
        return app.prior(lat, lon)
    return None


class _Handler(BaseHTTPRequestHandler):
    """The page's requests, answered from ``app`` (set by :func:`make_handler`)."""

    server_version = "locdiff"
    app: App

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def _send(self, status: int, body: bytes, kind: str = "text/html; charset=utf-8", **headers):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path in ("/", "/index.html"):
            return self._send(200, page("<p>Drop a photo, or paste a point.</p>"))
        name = self.path.removeprefix("/result/")
        result = self.app.results.get(name.removesuffix(".geojson"))
        if name.endswith(".geojson") and result is not None:
            disposition = f'attachment; filename="locdiff-{result["id"]}.geojson"'
            return self._send(200, result["geojson"].encode(), "application/geo+json",
                              Content_Disposition=disposition)  # fmt: skip
        return self._send(404, error_page(f"nothing at {self.path}"))

    def do_POST(self):  # noqa: N802
        try:
            fields = read_form(self.headers, self.rfile, self.app.max_bytes)
            result = answer_form(self.app, self.path, fields)
        except BadRequest as e:
            return self._send(e.status, error_page(str(e)))
        except Exception as e:  # the server keeps serving whatever one request does
            return self._send(500, error_page(f"could not answer: {type(e).__name__}: {e}"))
        if result is None:
            return self._send(404, error_page(f"nothing at {self.path}"))
        return self._send(200, result_page(result))


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    """The request handler class of a server answering from ``app``."""
    return type("Handler", (_Handler,), {"app": app})


def serve(checkpoint: str, *, host: str = "127.0.0.1", port: int = 8000, top_k: int = 5,
          max_bytes: int = MAX_UPLOAD_BYTES, ready=None) -> None:  # fmt: skip
    """Serve ``checkpoint``'s run at ``http://host:port/`` until interrupted; ``ready``
    (optional) is called with the URL once the server listens."""
    app = App(checkpoint, top_k=top_k, max_bytes=max_bytes)
    server = ThreadingHTTPServer((host, port), make_handler(app))
    url = f"http://{host}:{server.server_address[1]}/"
    print(f"LocDiff serving {checkpoint} at {url} (Ctrl-C stops)", flush=True)
    if ready is not None:
        ready(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
