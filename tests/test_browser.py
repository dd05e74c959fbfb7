"""A real browser against a real authorization server: headless Chromium, oidc-provider, gunicorn.

The operator opens the status page, clicks Connect, signs in and consents at
oidc-provider (a certified OpenID Connect server, tests/oidc/server.mjs) and
lands on TokenKeep's result page; a backend then fetches the token, and the
provider's userinfo endpoint accepts it. Everything listens on 127.0.0.1, and
Chromium resolves no other host name, so nothing leaves the machine.

Set TOKENKEEP_SCREENSHOTS=docs/screenshots to save a PNG of each page.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from serving import Gateway, serving

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
OIDC_DIR = Path(__file__).resolve().parent / "oidc"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # Any host but 127.0.0.1 fails to resolve: the provider's dev login page
    # @imports a web font, and no request may leave the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)
WAIT_SECONDS = 15
OPERATOR_LOGIN = "operator@example.test"
ALIASES = ("oidc", "crm", "billing")


def missing(reason: str) -> None:
    """In CI a missing tool fails the run; on a workstation it skips with the reason."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run; see `make test`)")
    pytest.skip(f"{reason}; `make test` installs it")


@pytest.fixture(scope="module")
def tools() -> None:
    """Chromium, ChromeDriver, selenium, node and the installed oidc-provider, or fail/skip."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            missing(f"{path} is missing (Debian packages chromium and chromium-driver)")
    if shutil.which("node") is None:
        missing("node is missing (Debian package nodejs)")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        missing("tests/oidc/node_modules is missing (npm ci in tests/oidc)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing("selenium is not installed (the dev extra)")


@dataclass(frozen=True)
class Issuer:
    """A running oidc-provider: its discovery document and its clients (id -> secret)."""

    url: str
    discovery: dict[str, Any]
    clients: dict[str, str]
    log: list[str]

    def client_id(self, alias: str) -> str:
        """The client TokenKeep's provider `alias` is registered with."""
        return f"tokenkeep-{alias}"


@contextmanager
def oidc_provider(redirect_uri: str, aliases: tuple[str, ...]) -> Iterator[Issuer]:
    """Start tests/oidc/server.mjs on a free port, one client per alias for `redirect_uri`."""
    clients = {f"tokenkeep-{alias}": secrets.token_urlsafe(24) for alias in aliases}
    env = {**os.environ, "OIDC_CLIENTS": json.dumps(clients), "OIDC_REDIRECT_URI": redirect_uri}
    server = subprocess.Popen(
        ["node", "server.mjs"],
        cwd=OIDC_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log: list[str] = []
    ready = threading.Event()
    url: list[str] = []

    def read() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            log.append(line.rstrip())
            if line.startswith("READY "):
                url.append(line.split()[1])
                ready.set()
        ready.set()  # the process ended

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(WAIT_SECONDS) or not url:
            pytest.fail("oidc-provider did not start:\n" + "\n".join(log))
        with requests.Session() as http:
            discovery = http.get(url[0] + "/.well-known/openid-configuration", timeout=5).json()
        yield Issuer(url[0], discovery, clients, log)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        reader.join(timeout=5)
        if server.stdout is not None:
            server.stdout.close()
        print("--- oidc-provider output ---\n" + "\n".join(log))  # shown on failure


@pytest.fixture
def browser(tools: None, tmp_path: Path) -> Iterator[Any]:
    """Headless Debian Chromium through its ChromeDriver, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # No driver log: the first URL carries the admin password (see below).
    service = Service(str(CHROMEDRIVER), log_output=subprocess.DEVNULL)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


class Pages:
    """Small helpers over the WebDriver: wait for a heading, click, screenshot."""

    def __init__(self, driver: Any) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.by = By
        self.wait = WebDriverWait(driver, WAIT_SECONDS)
        self.conditions = expected_conditions
        folder = os.environ.get("TOKENKEEP_SCREENSHOTS")
        self.screenshots = None if not folder else (ROOT / folder)

    def heading(self, text: str) -> str:
        """Wait until the page's h1 contains `text`; return the whole h1."""
        h1 = (self.by.TAG_NAME, "h1")
        try:
            self.wait.until(self.conditions.text_to_be_present_in_element(h1, text))
        except Exception:
            pytest.fail(f"no h1 with {text!r} at {self.url()}:\n{self.driver.page_source[:3000]}")
        heading: str = self.driver.find_element(*h1).text
        return heading

    def url(self) -> str:
        """The current URL without user info."""
        url: str = self.driver.current_url
        return url.split("@")[-1]

    def link(self, text: str) -> None:
        """Click the link whose visible text is `text`."""
        self.driver.find_element(self.by.LINK_TEXT, text).click()

    def button_to(self, href: str) -> str:
        """Click the link to `href`; return its accessible text (hidden parts included)."""
        link = self.driver.find_element(self.by.CSS_SELECTOR, f'a[href="{href}"]')
        label: str = " ".join(link.get_attribute("textContent").split())
        link.click()
        return label

    def fill(self, name: str, value: str) -> None:
        """Type into the input called `name`."""
        field = self.wait.until(self.conditions.element_to_be_clickable((self.by.NAME, name)))
        field.send_keys(value)

    def submit(self) -> None:
        """Click the form's submit button."""
        self.driver.find_element(self.by.CSS_SELECTOR, "[type=submit]").click()

    def rows(self) -> list[str]:
        """The visible text of each table body row."""
        found = self.driver.find_elements(self.by.CSS_SELECTOR, "tbody tr")
        return [row.text for row in found]

    def text(self) -> str:
        """The visible text of the page."""
        text: str = self.driver.find_element(self.by.TAG_NAME, "body").text
        return text

    def screenshot(self, name: str) -> None:
        """Save the whole page as `name`.png when TOKENKEEP_SCREENSHOTS names a folder."""
        if self.screenshots is None:
            return
        self.screenshots.mkdir(parents=True, exist_ok=True)
        # A viewport as tall as the page's content plus a margin: no scroll bar, nothing cut.
        height = self.driver.execute_script(
            "return Math.max(...Array.from(document.body.children,"
            " (e) => e.getBoundingClientRect().bottom + window.scrollY))"
        )
        metrics = {"width": 1280, "height": max(480, int(height) + 48), "deviceScaleFactor": 1}
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", {**metrics, "mobile": False}
        )
        try:
            self.driver.save_screenshot(str(self.screenshots / f"{name}.png"))
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_operator_connects_a_real_provider_in_a_real_browser_and_a_backend_gets_a_token(
    browser: Any, tmp_path: Path
) -> None:
    pages = Pages(browser)
    # A minimum refresh interval of 0 lets the test force a refresh right after connecting.
    settings = {"force_refresh_min_interval_seconds": "0"}
    with (
        serving(tmp_path, settings=settings) as gateway,
        oidc_provider(gateway.url + "/callback", ALIASES) as issuer,
    ):
        for alias in ALIASES:  # billing stays registered, never connected
            register(gateway, issuer, alias)

        # HTTP Basic without a login dialog: the first navigation carries the
        # credentials in the URL, and Chromium keeps them for this origin, so
        # the Connect clicks and later visits to TokenKeep are logged in too.
        # (Network.setExtraHTTPHeaders would also send the admin password to
        # the provider's origin.) Nothing else sees that URL: no driver log.
        host = gateway.url.removeprefix("http://")
        browser.get(f"http://admin:{gateway.admin_password}@{host}/")
        pages.heading("Providers")
        assert pages.text().count("Not connected") == 3

        assert pages.button_to("/auth?provider=oidc") == "Connect oidc"
        assert pages.url().startswith(issuer.url + "/interaction/"), pages.url()
        pages.heading("Sign-in")
        pages.fill("login", OPERATOR_LOGIN)
        pages.fill("password", "any password")
        pages.screenshot("provider-login")
        pages.submit()
        pages.heading("Authorize")
        pages.submit()  # consent: "Continue"

        assert pages.heading("is connected") == "oidc is connected"
        assert pages.url().startswith(gateway.url + "/callback?")
        result = pages.text()
        assert "openid offline_access" in " ".join(result.split())
        assert "received: TokenKeep renews the access token automatically" in result
        assert "$TOKENKEEP_API_KEY" in result
        pages.screenshot("connected")
        assert_no_secret(result, gateway, issuer)

        token = gateway.token("oidc")
        assert token.status == 200, token.text
        body = token.json()
        assert body["provider"] == "oidc"
        assert set(body["scope"].split()) == {"openid", "offline_access"}
        assert 3500 < body["expires_in"] <= 3600
        assert userinfo(issuer, body["access_token"]) == {"sub": OPERATOR_LOGIN}
        assert body["access_token"] not in result

        # The refresh token works at the real token endpoint too.
        refreshed = gateway.api("POST", "/api/token/refresh", provider="oidc")
        assert refreshed.status == 200, refreshed.text
        fresh = refreshed.json()["access_token"]
        assert fresh != body["access_token"]
        assert userinfo(issuer, fresh) == {"sub": OPERATOR_LOGIN}

        # A second provider, connected then revoked at the provider: its next
        # refresh gets invalid_grant, so the status page asks for re-authorization.
        browser.get(gateway.url + "/")
        pages.heading("Providers")
        pages.button_to("/auth?provider=crm")
        pages.heading("Authorize")  # signed in at the provider already: consent only
        pages.submit()
        assert pages.heading("is connected") == "crm is connected"
        revoke(issuer, "crm", gateway.stored("crm").tokens.refresh_token)
        failed = gateway.cli("refresh", "crm")
        assert failed.returncode != 0

        browser.get(gateway.url + "/")
        pages.heading("Providers")
        rows = {row.split()[0]: " ".join(row.split()) for row in pages.rows()}
        assert rows["billing"].startswith("billing Not connected")
        assert rows["crm"].startswith("crm Needs re-authorization")
        assert "not served until reconnected" in rows["crm"]
        assert "invalid_grant" in rows["crm"] and rows["crm"].endswith("Yes Reconnect crm")
        assert rows["oidc"].startswith("oidc Connected in 59 min")
        assert rows["oidc"].endswith("none No Reconnect oidc")
        pages.screenshot("status")
        assert_no_secret(pages.text(), gateway, issuer)

        # Reconnect, then cancel at the provider's consent page: a denied page
        # that offers to start again, and the stored connection is unchanged.
        assert pages.button_to("/auth?provider=oidc") == "Reconnect oidc"
        pages.heading("Authorize")
        pages.link("[ Cancel ]")
        pages.heading("Access was denied at the provider")
        assert "access_denied" in pages.text()
        pages.screenshot("denied")
        assert pages.button_to("/auth?provider=oidc") == "Start again with oidc"
        pages.heading("Authorize")  # the link really restarts the flow

        again = gateway.token("oidc").json()
        assert again["access_token"] == fresh
        assert userinfo(issuer, again["access_token"]) == {"sub": OPERATOR_LOGIN}
        grant_errors = [line for line in issuer.log if line.startswith("grant.error")]
        assert len(grant_errors) == 1, issuer.log  # crm's refresh after the revocation


def register(gateway: Gateway, issuer: Issuer, alias: str) -> None:
    """Register `alias` at the issuer with the CLI, as an operator would."""
    result = gateway.cli(
        "register-provider",
        alias,
        "--client-id",
        issuer.client_id(alias),
        "--client-secret",
        issuer.clients[issuer.client_id(alias)],
        "--authorize-url",
        issuer.discovery["authorization_endpoint"],
        "--token-url",
        issuer.discovery["token_endpoint"],
        "--scope",
        "openid",
        "--scope",
        "offline_access",
        # oidc-provider keeps offline_access (and issues a refresh token) only
        # with prompt=consent, as Google does.
        "--param",
        "prompt=consent",
    )
    assert result.returncode == 0, result.stderr


def userinfo(issuer: Issuer, access_token: str) -> dict[str, Any]:
    """Call the provider's userinfo endpoint with the token; it must accept it."""
    with requests.Session() as http:
        answer = http.get(
            issuer.discovery["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=5,
        )
    assert answer.status_code == 200, answer.text
    info: dict[str, Any] = json.loads(answer.text)
    return info


def revoke(issuer: Issuer, alias: str, refresh_token: str | None) -> None:
    """Revoke a refresh token at the provider (RFC 7009), as a user removing the app would."""
    assert refresh_token is not None
    client_id = issuer.client_id(alias)
    with requests.Session() as http:
        answer = http.post(
            issuer.discovery["revocation_endpoint"],
            data={"token": refresh_token, "token_type_hint": "refresh_token"},
            auth=(client_id, issuer.clients[client_id]),
            timeout=5,
        )
    assert answer.status_code == 200, answer.text


def assert_no_secret(text: str, gateway: Gateway, issuer: Issuer) -> None:
    """No key, password or client secret on a page."""
    for secret in (gateway.api_key, gateway.admin_password, *issuer.clients.values()):
        assert secret not in text


def test_a_missing_browser_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        missing("/usr/bin/chromium is missing")


def test_a_missing_browser_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="make test"):
        missing("/usr/bin/chromium is missing")
