"""Headless Chromium driven over the Chrome DevTools Protocol, with nothing but
``websocket-client``: Debian's ``chromium`` is the browser (no browser
download), kept on loopback (research/viewers.md §7 gives the flags).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import requests
import websocket

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    # Software WebGL: Cornerstone3D draws nothing without WebGL. Not --use-gl=swiftshader (that removes WebGL).
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    # No traffic outside the machine: loopback is never proxied, every other name fails to resolve.
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-default-apps",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page; records the network traffic of that page."""

    def __init__(self, executable: str, width: int = 1400, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="synthpacs-chromium-")
        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            port = self._devtools_port()
            page = self._page_target(port)
            self.ws = websocket.create_connection(
                page["webSocketDebuggerUrl"], suppress_origin=True, timeout=None, enable_multithread=True
            )
        except BaseException:
            self.close()
            raise
        self._next_id = 0
        self._lock = threading.Lock()
        self._results: dict[int, dict] = {}
        self._arrived = threading.Condition()
        self.events: dict[str, list[dict]] = defaultdict(list)
        self.console: list[str] = []
        self._reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self._reader.start()
        self.call("Page.enable")
        self.call("Network.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _devtools_port(self, timeout: float = 30) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CDPError(f"chromium exited with {self.process.returncode}: {self.process.stderr.read().decode()[-2000:]}")
            if marker.exists():
                lines = marker.read_text().split()
                if lines:
                    return int(lines[0])
            time.sleep(0.1)
        raise CDPError("chromium did not open its DevTools port")

    @staticmethod
    def _page_target(port: int) -> dict:
        session = requests.Session()
        session.trust_env = False  # never through a proxy
        for _ in range(50):
            targets = session.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]
            time.sleep(0.1)
        raise CDPError("chromium has no page target")

    def _read(self) -> None:
        while True:
            try:
                message = json.loads(self.ws.recv())
            except Exception:  # the socket closed
                with self._arrived:
                    self._arrived.notify_all()
                return
            if "id" in message:
                with self._arrived:
                    self._results[message["id"]] = message
                    self._arrived.notify_all()
            else:
                method = message.get("method", "")
                params = message.get("params", {})
                self.events[method].append(params)
                if method == "Runtime.consoleAPICalled":
                    self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
                elif method == "Runtime.exceptionThrown":
                    self.console.append("exception: " + params.get("exceptionDetails", {}).get("text", ""))

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        with self._lock:
            self._next_id += 1
            message_id = self._next_id
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        with self._arrived:
            while message_id not in self._results:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CDPError(f"{method}: no answer in {timeout} s")
                self._arrived.wait(remaining)
            message = self._results.pop(message_id)
        if "error" in message:
            raise CDPError(f"{method}: {message['error']}")
        return message.get("result", {})

    def evaluate(self, expression: str, timeout: float = 60):
        result = self.call("Runtime.evaluate", timeout=timeout, expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:80]}...: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60, interval: float = 0.5):
        """Evaluate until the value is truthy; return it (None on timeout).

        A script error counts as not yet (the page may still be loading, or navigating)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except CDPError:
                value = None
            if value:
                return value
            time.sleep(interval)
        return None

    def on_new_document(self, source: str) -> None:
        self.call("Page.addScriptToEvaluateOnNewDocument", source=source)

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def screenshot(self, path: str | os.PathLike) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        Path(path).write_bytes(data)
        return data

    def responses(self) -> list[dict]:
        """Every response of the page so far: url, status, and the request's headers."""
        requests_by_id = {e["requestId"]: e["request"] for e in list(self.events["Network.requestWillBeSent"])}
        out = []
        for event in list(self.events["Network.responseReceived"]):
            request = requests_by_id.get(event["requestId"], {})
            out.append(
                {
                    "url": event["response"]["url"],
                    "status": event["response"]["status"],
                    "request_headers": request.get("headers", {}),
                    "type": event.get("type"),
                }
            )
        for event in list(self.events["Network.loadingFailed"]):
            request = requests_by_id.get(event["requestId"], {})
            out.append(
                {
                    "url": request.get("url", ""),
                    "status": None,
                    "error": event.get("errorText"),
                    "request_headers": request.get("headers", {}),
                    "type": event.get("type"),
                }
            )
        return out

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
