"""The documentation site (mkdocs.yml): built with ``mkdocs build --strict``, then opened in headless Chromium as a
reader would, served over HTTP on 127.0.0.1: the home page, the results page, a published report and an API page
render with their headings and images, and no page logs a console error or fails a request."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)"),
    pytest.mark.skipif(
        importlib.util.find_spec("mkdocs") is None, reason="needs the docs extra (pip install -e '.[docs]')"
    ),
]

# What the page shows: its h1-h3 headings (without the permalink sign) and every image, loaded or not.
PAGE_STATE = """JSON.stringify({
  headings: [...document.querySelectorAll("h1, h2, h3")].map(h => [h.tagName, h.textContent.replace("¶", "").trim()]),
  images: [...document.images].map(i => [i.getAttribute("src"), i.complete && i.naturalWidth > 0]),
  text: document.body.innerText,
})"""


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: it reads commands
    on fd 3 and writes replies and events on fd 4, each JSON text ended by a NUL), so the test needs no browser
    driver package and no websocket client."""

    def __init__(self, profile: Path) -> None:
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        flags = ["--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
                 "--remote-debugging-pipe"]  # fmt: skip
        if os.geteuid() == 0:  # Chromium refuses to sandbox itself as root (CI and these machines run as root)
            flags.append("--no-sandbox")
        # bash moves the pipe's ends onto the fds Chromium expects (3 and 4) before it becomes Chromium.
        self._process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{commands_read}- 4>&{replies_write}-', CHROMIUM, *flags, "about:blank"],
            pass_fds=(commands_read, replies_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(replies_write)
        self._buffer = b""
        self._next_id = 0
        self._replies_by_id: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> None:
        ready, _, _ = select.select([self._replies], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError("Chromium did not answer in time")
        chunk = os.read(self._replies, 1 << 20)
        if not chunk:
            raise RuntimeError(f"Chromium closed its DevTools pipe (exit code {self._process.poll()})")
        self._buffer += chunk
        *messages, self._buffer = self._buffer.split(b"\0")
        for raw in messages:
            message = json.loads(raw)
            if "id" in message:
                self._replies_by_id[message["id"]] = message
            else:
                self.events.append(message)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            command["sessionId"] = session
        os.write(self._commands, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + 60
        while self._next_id not in self._replies_by_id:
            self._read(deadline)
        reply = self._replies_by_id.pop(self._next_id)
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply["result"]

    def wait_for(self, found: Callable[[dict[str, Any]], bool], after: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(found(event) for event in self.events[after:]):
            self._read(deadline)

    def settle(self, seconds: float) -> None:
        """Take in whatever the page logs during ``seconds`` (late scripts, the search index)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self._read(deadline)
            except TimeoutError:
                return

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self._process.wait(timeout=30)
        except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            os.close(self._commands)
            os.close(self._replies)


def _problems(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and failed loads among DevTools events."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            found.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(f"{params['entry'].get('source')}: {params['entry']['text']} {params['entry'].get('url', '')}")
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_site_renders_in_chromium(served: str, tmp_path: Path) -> None:
    browser = Chromium(tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            browser.send(f"{domain}.enable", session=session)

        def open_page(path: str) -> tuple[dict[str, Any], list[str]]:
            start = len(browser.events)
            browser.send("Page.navigate", {"url": f"{served}/{path}"}, session)
            browser.wait_for(
                lambda e: e.get("method") == "Page.loadEventFired" and e.get("sessionId") == session, start
            )
            browser.settle(1.0)
            value = browser.send("Runtime.evaluate", {"expression": PAGE_STATE, "returnByValue": True}, session)
            return json.loads(value["result"]["value"]), _problems(browser.events[start:])

        home, problems = open_page("")
        assert not problems, problems
        assert ["H1", "irnet-bench"] in home["headings"]
        for section in ("The answer", "Set up", "Run a benchmark", "Use IRNet outside the benchmark", "Test"):
            assert ["H2", section] in home["headings"], home["headings"]
        assert any(src.endswith("formation_energy_scaling.png") for src, _ in home["images"]), home["images"]
        assert all(loaded for _, loaded in home["images"]), home["images"]

        results, problems = open_page("results/")
        assert not problems, problems
        assert ["H1", "Results"] in results["headings"]
        assert sum(tag == "H2" for tag, _ in results["headings"]) >= 5, results["headings"]
        assert all(loaded for _, loaded in results["images"]), results["images"]

        report, problems = open_page("results/scaling/leaderboard/")  # a published report, reached from Results
        assert not problems, problems
        assert ["H1", "IRNet benchmark leaderboard"] in report["headings"]
        assert len(report["images"]) >= 3 and all(loaded for _, loaded in report["images"]), report["images"]

        api, problems = open_page("api/estimators/")
        assert not problems, problems
        assert ["H2", "irnet.estimators"] in api["headings"], api["headings"]
        assert any(text.startswith("IRNetRegressor") for _, text in api["headings"]), api["headings"]
        assert "MagpieFeaturizer" in api["text"] and ":class:" not in api["text"]
    finally:
        browser.close()
