"""The dashboard in a real browser (issue 15): Debian's chromium driven by Selenium through
chromium-driver, against the real HTTPS API listener, database, loopback DNS server, MX sink and
webhook receiver. One walk through the flows a newcomer does after `make serve`:

log in; add a domain; see its records; publish them in the loopback DNS; verify; see it verified;
send through the API; find the message in the logs with its delivered event; add and remove a
suppression; create a webhook, see a delivery and a test event in its log; create and revoke a
token; edit a template with its preview; keep and view a sandbox message; log out, and in as the
operator. A screenshot of each page goes to SCREENSHOTS (look at them), and one at a phone's width
(375 CSS px, `<name>-phone.png`).

Every page shot is also checked: axe-core (vendored from npm in tests/vendor/axe-core, injected by
Selenium, never served by the app) finds no serious or critical violation of WCAG 2.x A/AA rules,
and at 375 px the page has no horizontal scroll.

The browser trusts exactly the test server's key (`--ignore-certificate-errors-spki-list`), not
any certificate. Selenium blocks, so each browser step runs in a thread while the service keeps
serving on the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mailtrap_smtp import outbox
from mailtrap_smtp.config import WebhooksConfig
from mailtrap_smtp.consumers.stats_rollup import StatsRollup, SubmissionRollup
from mailtrap_smtp.core import operator_password
from mailtrap_smtp.delivery.worker import DeliveryService
from mailtrap_smtp.dnsresolve import make_resolver
from mailtrap_smtp.hooks.delivery import WebhookDelivery, make_client
from tests.delivery_util import FAST
from tests.http_util import ApiEnv, minimal
from tests.mx_sink import MxSink
from tests.paths import ROOT
from tests.webhook_receiver import Receiver

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")  # axe's impacts that fail the walk
# A phone (iPhone SE/mini width): the viewport meta applies, as on a real phone.
PHONE = {"width": 375, "height": 812, "deviceScaleFactor": 1, "mobile": True}
# axe's results, reduced to what a failure message needs. No frames: the message-HTML frame is
# sandboxed without scripts, so axe could not run in it (and it is the sender's HTML, not ours).
_AXE_RUN = """const done = arguments[arguments.length - 1];
axe.run(document, {iframes: false, resultTypes: ["violations"]}).then(
  r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}))),
  e => done([{id: "axe-error", impact: "critical", help: String(e), nodes: []}]));"""
# The page's width and its viewport's, and the elements that stick out of it unclipped (to name them).
_WIDTHS = """const w = document.documentElement.clientWidth, out = [];
for (const el of document.querySelectorAll("body *")) {
  if (el.getBoundingClientRect().right <= w + 1) continue;
  let p = el.parentElement;
  while (p && getComputedStyle(p).overflowX === "visible") p = p.parentElement;
  if (!p) out.push(el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className ? "." + el.className : ""));
}
return [document.documentElement.scrollWidth, w, out.slice(0, 6)];"""
SCREENSHOTS = Path(os.environ.get("DASHBOARD_SCREENSHOTS", ROOT / "build" / "screenshots"))
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")

if CHROMIUM and DRIVER:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait


def _spki_pin(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def browser(cert_files: tuple[Path, Path]) -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-proxy-server", "--disable-extensions",
                f"--ignore-certificate-errors-spki-list={_spki_pin(cert_files[0].read_bytes())}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


class Walk:
    """Blocking browser steps (run with `step`, in a thread)."""

    def __init__(self, driver: WebDriver, base: str) -> None:
        self.d, self.base = driver, base
        self.axe = AXE.read_text(encoding="utf-8")
        self.problems: list[str] = []  # every page's, reported together at the end
        self.checked: list[str] = []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.d.get(self.base + "/dashboard" + path)

    def shot(self, name: str) -> None:
        """Screenshots at desktop and phone width, and the page's accessibility and phone checks."""
        self.d.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
        self.d.execute_script(self.axe)
        self.accessible(name)
        # Only the layout changes (no reload): a page shown once after a form keeps its content.
        self.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        try:
            scroll, client, wide = self.d.execute_script(_WIDTHS)
            if scroll > client:
                self.problems.append(f"{name}: scrolls sideways at {PHONE['width']} px ({scroll} > {client}): {wide}")
            self.d.save_screenshot(str(SCREENSHOTS / f"{name}-phone.png"))
            self.accessible(f"{name}-phone")  # what only overflows on a phone (scroll regions)
        finally:
            self.d.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        self.checked.append(name)

    def accessible(self, name: str) -> None:
        for v in self.d.execute_async_script(_AXE_RUN):
            if v["impact"] in BLOCKING:
                self.problems.append(f"{name}: {v['impact']} {v['id']} ({v['help']}) at {v['nodes']}")

    def keyboard_start(self) -> tuple[str, str, str]:
        """From the top of the page, the first Tab's element, its outline, and where Enter on it leads."""
        self.d.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        focused = self.d.switch_to.active_element
        text, outline = focused.text, focused.value_of_css_property("outline-style")
        focused.send_keys(Keys.ENTER)
        return text, outline, self.d.execute_script("return location.hash")

    def press(self, text: str) -> None:
        self.d.find_element(By.XPATH, f"//button[normalize-space()='{text}']").click()

    def fill(self, field_id: str, value: str) -> None:
        box = self.d.find_element(By.ID, field_id)
        box.clear()
        box.send_keys(value)

    def wait_text(self, text: str, timeout: float = 10) -> None:
        # The page under the wait may be replaced by the next one between finding <main> and reading
        # it: Chromium then answers "Node ... does not belong to the document" (a WebDriverException,
        # not a stale-element one). Both mean "look again"; a dead browser still ends in a timeout.
        WebDriverWait(self.d, timeout, ignored_exceptions=(StaleElementReferenceException, WebDriverException)).until(
            ec.text_to_be_present_in_element((By.TAG_NAME, "main"), text))

    def main(self) -> str:
        return str(self.d.find_element(By.TAG_NAME, "main").text)


@pytest.fixture
async def walk(api_factory: Any, dns_server: Any, browser: Any) -> AsyncIterator[tuple[Walk, ApiEnv]]:
    env: ApiEnv = await api_factory(dns={"nameservers": [dns_server.address], "timeout_seconds": 1.0},
                                    webhooks={"allow_private_targets": True})
    yield Walk(browser, env.base), env


async def step(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def test_newcomer_walks_every_flow(walk: tuple[Walk, ApiEnv], dns_server: Any, make_config: Any) -> None:
    w, env = walk
    admin = await env.new_token(level="admin", streams=("transactional", "bulk"))

    # log in
    await step(w.open, "/")
    assert "/dashboard/login" in w.d.current_url
    await step(w.shot, "01-login")
    await step(w.fill, "token", admin)
    await step(w.press, "Log in")
    await step(w.wait_text, "This period's usage")
    # keyboard: the first Tab lands on the skip link, visibly focused, and Enter goes to the content
    assert await step(w.keyboard_start) == ("Skip to content", "solid", "#main")

    # add a domain, see its records
    await step(w.open, "/domains")
    await step(w.fill, "domain_name", "shop.test")
    await step(w.press, "Add domain")
    await step(w.wait_text, "Publish these records")
    await step(w.shot, "03-domain-added")
    rows = await step(lambda: [[c.text for c in tr.find_elements(By.TAG_NAME, "td")]
                               + [b.get_attribute("data-copy") for b in tr.find_elements(By.CLASS_NAME, "copy")]
                               for tr in w.d.find_elements(By.CSS_SELECTOR, "table.records tbody tr")])
    assert {r[1] for r in rows} >= {"TXT"} and all(r[4] == "unchecked" for r in rows)

    # publish them in the loopback DNS, verify, see it verified
    for r in rows:
        dns_server.add(r[5], r[1], r[6])  # what the copy buttons copy: name, value
    await step(w.press, "Verify now")
    await step(w.wait_text, "Checked the DNS just now.")
    assert await step(lambda: w.d.find_element(By.ID, "domain-state").text) == "verified"
    statuses = await step(lambda: [e.text for e in w.d.find_elements(By.CSS_SELECTOR, "table.records .status")])
    assert set(statuses) == {"pass"}
    await step(w.shot, "04-domain-verified")
    await step(w.open, "/domains")
    await step(w.wait_text, "shop.test")
    await step(w.shot, "04a-domains")

    # create a webhook (its secret shown once)
    receiver = Receiver()
    await receiver.start()
    try:
        await step(w.open, "/webhooks")
        await step(w.fill, "w-url", receiver.url())
        await step(w.press, "Create webhook")
        await step(w.wait_text, "shown this once")
        secret = await step(lambda: w.d.find_element(By.ID, "signing-secret").text)
        assert len(secret) == 32
        await step(w.shot, "08-webhook-created")

        # send through the API, deliver to a real MX sink, feed stats and the webhook
        with MxSink() as sink:
            async with env.client() as c:
                sent = await c.post("/api/send", json=minimal(**{"from": {"email": "app@shop.test"},
                                                                  "to": [{"email": "newcomer@dest.test"}],
                                                                  "subject": "Hello from the dashboard test",
                                                                  "html": "<p>Hello <b>there</b></p>"}),
                                    headers=env.auth(admin))
            assert sent.status_code == 200, sent.text
            cfg = make_config(delivery={**FAST, "routes": {"dest.test": sink.address}})
            await DeliveryService(cfg, env.pool, make_resolver(["127.0.0.1:9"], 0.5)).run_once()
        hooks_cfg = WebhooksConfig(flush_seconds=0.0, timeout_seconds=2.0, allow_private_targets=True)
        async with make_client(hooks_cfg) as client:
            consumers = [StatsRollup(), SubmissionRollup(), WebhookDelivery(hooks_cfg, env.pool, client)]
            await outbox.OutboxRunner(env.pool, consumers).run_once()
        assert any(e["event"] == "delivery" for r in receiver.requests for e in r.events())

        # the webhook's delivery log shows it
        await step(w.open, "/webhooks")
        await step(lambda: w.d.find_element(By.CSS_SELECTOR, "main table tbody a").click())
        await step(w.wait_text, "Delivery log")
        assert "200" in await step(w.main)
        await step(w.press, "Send a test event")
        await step(w.wait_text, "Test event sent: acknowledged (HTTP 200).")
        assert len(receiver.requests) == 2  # the delivered event's batch, then the test event
        await step(w.shot, "09-webhook-delivery-log")
        await step(w.press, "Pause")
        await step(w.wait_text, "Paused.")
        await step(w.press, "Resume")
        await step(w.wait_text, "Resumed.")
    finally:
        await receiver.stop()

    # find the message in the logs with its delivered event
    await step(w.open, "/logs")
    await step(w.fill, "f-to", "newcomer@")
    await step(w.press, "Search")
    await step(w.wait_text, "1 messages.")
    await step(w.shot, "05-logs")
    await step(lambda: w.d.find_element(By.LINK_TEXT, "Hello from the dashboard test").click())
    await step(w.wait_text, "Timeline")
    page = await step(w.main)
    assert "Attempt 1: delivered" in page and "Subject: Hello from the dashboard test" in page
    assert "after reception" in page and "policy " in page
    assert await step(lambda: w.d.find_element(By.CSS_SELECTOR, "iframe.message-html").get_attribute("sandbox")) == ""
    await step(w.shot, "06-message")

    # the overview counts the delivery
    await step(w.open, "/")
    await step(w.wait_text, "Sent 1, delivered 1")
    await step(w.shot, "02-overview")

    # add and remove a suppression
    await step(w.open, "/suppressions")
    await step(w.fill, "a-email", "gone@dest.test")
    await step(w.press, "Suppress")
    await step(w.wait_text, "Suppressed gone@dest.test.")
    await step(w.shot, "07-suppression-added")
    await step(lambda: w.d.find_element(By.CSS_SELECTOR, "button[aria-label='Remove gone@dest.test']").click())
    await step(w.wait_text, "Removed gone@dest.test.")
    assert "No suppression" in await step(w.main)

    # create and revoke a token
    await step(w.open, "/tokens")
    await step(w.fill, "t-name", "ci")
    await step(w.press, "Create token")
    await step(w.wait_text, "shown this once")
    new_token = await step(lambda: w.d.find_element(By.ID, "new-token").text)
    token_id = new_token.split("_")[1]
    await step(w.shot, "10-token-created")
    await step(lambda: w.d.find_element(By.CSS_SELECTOR, f"button[aria-label='Revoke {token_id}']").click())
    await step(w.wait_text, f"Revoked {token_id}.")
    assert "revoked" in await step(lambda: w.d.find_element(By.ID, f"token-{token_id}").text)
    async with env.client() as c:
        refused = await c.post("/api/send", json=minimal(**{"from": {"email": "app@shop.test"}}),
                               headers=env.auth(new_token))
    assert refused.status_code == 401
    await step(w.shot, "11-token-revoked")

    # a template with its preview
    await step(w.open, "/templates")
    await step(w.fill, "t-name", "Welcome")
    await step(w.fill, "t-subject", "Hi {{name}}")
    await step(w.fill, "t-category", "welcome")
    await step(w.fill, "t-html", "<h1>Hello {{name}}</h1>")
    await step(w.press, "Create template")
    await step(w.wait_text, "Preview")
    await step(w.fill, "t-vars", '{"name": "Ada"}')
    await step(w.press, "Save and preview")
    await step(w.wait_text, "Subject: Hi Ada")
    await step(w.shot, "12-template-preview")
    await step(w.open, "/templates")
    await step(w.wait_text, "Welcome")
    await step(w.shot, "12a-templates")

    # a sandbox inbox: a message kept there, its HTML in a sandboxed frame, its header fields
    await step(w.open, "/inboxes")
    await step(w.fill, "i-name", "QA")
    await step(w.press, "Create inbox")
    await step(w.wait_text, "Inbox 'QA' created")
    inbox_id = (await step(lambda: w.d.current_url)).rstrip("/").rsplit("/", 1)[1]
    await step(w.shot, "13a-inbox")
    async with env.client() as c:
        kept = await c.post(f"/api/send/{inbox_id}", headers=env.auth(admin), json=minimal(
            subject="Kept for QA", text="plain part", html="<h2>Order shipped</h2><p>Thanks for waiting.</p>"))
    assert kept.status_code == 200, kept.text
    await step(w.d.refresh)
    await step(lambda: w.d.find_element(By.LINK_TEXT, "Kept for QA").click())
    await step(w.wait_text, "Header fields")
    frame = await step(lambda: w.d.find_element(By.CSS_SELECTOR, "iframe.message-html"))
    assert await step(frame.get_attribute, "sandbox") == ""
    await step(w.shot, "13-sandbox-message")
    await step(w.open, "/inboxes")
    await step(w.wait_text, "QA")
    await step(w.shot, "13b-inboxes")
    await step(w.open, "/logs/00000000-0000-4000-8000-000000000000")
    await step(w.wait_text, "no such page")
    await step(w.shot, "15-not-found")
    await step(w.open, "/")

    # log out; the operator logs in with the password set by the CLI's use case and sees every account
    operator_password.set_password(operator_password.path_for(env.cfg), "operator password for the walk")
    await step(w.press, "Log out")
    await step(w.wait_text, "Log in")
    await step(w.shot, "01a-logged-out")
    await step(w.fill, "token", "operator password for the walk")
    await step(w.press, "Log in")
    await step(w.wait_text, "Every account")
    assert "shop.test" in await step(w.main)
    await step(w.shot, "14-operator")
    assert len(w.checked) == 20 and not w.problems, "\n".join(w.problems)
