"""Headless Chromium for the browser tests, driven over the Chrome DevTools Protocol.

No driver to download: Debian's `chromium` (`.ci/run` installs it) started with
`--remote-debugging-port=0`, and one websocket to it (aiohttp, a dependency already). The API is
synchronous (each call runs the helper's own event loop), so it mixes with the integration
fixtures, which run their own `asyncio.run`. A test that cannot start Chromium fails with the
reason: `Chromium.start` raises, it never skips.

Console errors, uncaught exceptions and the browser's own error log (a resource that failed to
load, a Content-Security-Policy violation) are collected in `errors`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
#: the flags the closed network needs: without the background-networking ones Chromium's own
#: connections are refused and logged as errors
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-port=0")
#: where the tests keep their screenshots (README: Dashboard); CI keeps the folder as artifacts
SCREENSHOT_DIR = Path(os.environ.get("ENGAGEMENT_SCREENSHOT_DIR", Path(__file__).parents[2] / "artifacts" / "screenshots"))


class BrowserError(AssertionError):
    pass


def chromium_binary() -> str:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserError("no Chromium found (apt-get install chromium; .ci/run installs it): the browser tests "
                       "need it")


class Chromium:
    """One headless Chromium with one page."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        self.width, self.height = width, height
        self.loop = asyncio.new_event_loop()
        self.profile = Path(tempfile.mkdtemp(prefix="engagement-chromium-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.page_session: str | None = None
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.reader: asyncio.Task[None] | None = None

    # -- life cycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> Chromium:
        binary = chromium_binary()
        log = (self.profile / "stderr.log").open("wb")
        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile / 'profile'}",
                                      f"--window-size={self.width},{self.height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            text = (self.profile / "stderr.log").read_text(errors="replace")
            m = re.search(r"DevTools listening on (ws://\S+)", text)
            if m:
                url = m.group(1)
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise BrowserError(f"Chromium ({binary}) did not start (exit {self.proc.poll()}):\n{text[-3000:]}")
            time.sleep(0.1)
        self._run(self._connect(url))
        return self

    async def _connect(self, url: str) -> None:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(url, max_msg_size=256 * 1024 * 1024)
        self.reader = asyncio.create_task(self._read())
        target = await self._send("Target.createTarget", {"url": "about:blank"})
        attached = await self._send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        self.page_session = attached["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            await self._send(method, {}, page=True)
        await self._send("Emulation.setDeviceMetricsOverride",
                         {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False}, page=True)

    def close(self) -> None:
        async def stop() -> None:
            if self.reader is not None:
                self.reader.cancel()
            if self.ws is not None:
                await self.ws.close()
            if self.session is not None:
                await self.session.close()

        try:
            if not self.loop.is_closed():
                self.loop.run_until_complete(stop())
                self.loop.close()
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the protocol --------------------------------------------------------------------------
    def _run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            if "id" in data:
                fut = self.pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
                continue
            self.events.append(data)
            self._note_error(data)

    def _note_error(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"uncaught: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())

    async def _send(self, method: str, params: dict[str, Any], page: bool = False,
                    timeout: float = 30.0) -> dict[str, Any]:
        assert self.ws is not None
        msg_id = next(self.ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if page:
            message["sessionId"] = self.page_session
        fut: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        self.pending[msg_id] = fut
        await self.ws.send_json(message)
        answer = await asyncio.wait_for(fut, timeout)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One command to the page."""
        return self._run(self._send(method, params or {}, page=True))  # type: ignore[no-any-return]

    # -- what the tests use ----------------------------------------------------------------------
    def goto(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait for the load event."""
        async def go() -> None:
            start = len(self.events)
            result = await self._send("Page.navigate", {"url": url}, page=True)
            if result.get("errorText"):
                raise BrowserError(f"navigating to {url}: {result['errorText']}")
            if "loaderId" not in result:
                return  # within the document (a fragment): no load event, and the script does not rerun
            deadline = time.monotonic() + timeout
            while not any(e.get("method") == "Page.loadEventFired" for e in self.events[start:]):
                if time.monotonic() > deadline:
                    raise BrowserError(f"{url} did not load in {timeout}s")
                await asyncio.sleep(0.05)

        self._run(go())

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """A JavaScript expression's value (JSON-able)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": await_promise})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression[:80]}: {details.get('exception', {}).get('description') or details}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, what: str | None = None) -> None:
        """Poll until `expression` is truthy (in JavaScript's sense: an element is)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.evaluate(f"Boolean({expression})"):
                return
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout}s waiting for {what or expression}; "
                                   f"console errors: {self.errors}")
            self._run(asyncio.sleep(0.2))

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        """A PNG of the page (the whole page by default) in `SCREENSHOT_DIR`."""
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        params: dict[str, Any] = {"format": "png"}
        self.evaluate("window.scrollTo(0, 0)")
        if full_page:
            height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)") or self.height)
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        path = SCREENSHOT_DIR / name
        path.write_bytes(base64.b64decode(data))
        return path

    def settle(self) -> list[str]:
        """Let queued events arrive; the errors so far."""
        self._run(asyncio.sleep(0.3))
        self.evaluate("1")
        return list(self.errors)
