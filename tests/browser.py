"""Loads a local HTML file in headless Chromium over the DevTools protocol (``websocket-client``): what went
wrong on the page (uncaught exceptions, console errors, failed loads), every request it made off the machine,
whether its plots were drawn, and a screenshot."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any, Optional

from tests.cli_helpers import stop_process

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--mute-audio", "--remote-debugging-port=0"]

# resolves once every plotly plot on the page is drawn (or at the time limit)
WAIT_JS = """new Promise((resolve) => {
  const t0 = Date.now();
  (function poll() {
    const divs = document.querySelectorAll('.plotly-graph-div');
    const done = [...divs].every(d => d._fullLayout && d.querySelector('.main-svg'));
    if ((done && document.readyState === 'complete') || Date.now() - t0 > %d) {
      requestAnimationFrame(() => requestAnimationFrame(() => resolve({plots: divs.length, done})));
    } else setTimeout(poll, 50);
  })();
})"""


def chromium() -> Optional[str]:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def load_page(path: Path, width: int = 1280, height: int = 2400, timeout: float = 60.0) -> dict[str, Any]:
    import websocket

    url = Path(path).resolve().as_uri()
    profile = tempfile.mkdtemp(prefix="idres-chromium-")
    proc = subprocess.Popen([chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    ws = None
    deadline = time.time() + timeout
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        while not (port_file.exists() and port_file.read_text().split()):
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"chromium did not start (exit status {proc.poll()})")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        while True:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                break
            if time.time() > deadline:
                raise RuntimeError("chromium opened no page")
            time.sleep(0.05)
        ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        state: dict[str, Any] = {"id": 0, "errors": [], "requests": [], "loaded": False}

        def handle(msg: dict[str, Any]) -> None:
            m, p = msg.get("method"), msg.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                text = d.get("exception", {}).get("description") or d.get("text", "")
                state["errors"].append("exception: " + text.splitlines()[0])
            elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                state["errors"].append(f"console.{p['type']}: " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p["args"]))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                state["errors"].append(f"log.{p['entry']['source']}: {p['entry']['text']} {p['entry'].get('url', '')}")
            elif m == "Network.requestWillBeSent":
                u = p["request"]["url"]
                if not u.startswith(("file:", "data:", "blob:", "about:")):
                    state["requests"].append(u)
            elif m == "Page.loadEventFired":
                state["loaded"] = True

        def call(method: str, **params: Any) -> dict[str, Any]:
            state["id"] += 1
            mine = state["id"]
            ws.send(json.dumps({"id": mine, "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("id") == mine:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})
                handle(msg)

        for domain in ("Page", "Runtime", "Log", "Network"):
            call(domain + ".enable")
        call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        call("Page.navigate", url=url)
        while not state["loaded"]:
            if time.time() > deadline:
                raise TimeoutError("the page did not finish loading")
            handle(json.loads(ws.recv()))
        res = call("Runtime.evaluate", expression=WAIT_JS % int(timeout * 500), awaitPromise=True, returnByValue=True)
        info = res.get("result", {}).get("value") or {}
        png = base64.b64decode(call("Page.captureScreenshot", format="png")["data"])
        return {"errors": state["errors"], "requests": state["requests"], "png": png,
                "plots": info.get("plots", 0), "drawn": bool(info.get("done"))}
    finally:
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass
        stop_process(proc)
        shutil.rmtree(profile, ignore_errors=True)


def colours(png: bytes, limit: int = 256) -> int:
    """Distinct pixel colours of an 8-bit, non-interlaced PNG (what Chromium writes), up to ``limit``."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(png):
        n, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat += data
    assert depth == 8 and interlace == 0 and ctype in (0, 2, 4, 6), (depth, ctype, interlace)
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    stride = w * bpp
    raw, prev, seen = zlib.decompress(idat), bytearray(stride), set()
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        seen.update(bytes(line[i:i + bpp]) for i in range(0, stride, bpp))
        if len(seen) >= limit:
            break
        prev = line
    return len(seen)
