"""A stand-in for the user's browser in the OAuth U2M test: `BROWSER="python oauth_browser.py %s"`.

Python's `webbrowser` waits for this command, and the SDK opens its callback listener only
after `webbrowser.open_new` returns, so the command forks: the parent returns at once, the child
drives headless Chromium (Debian's, through Playwright) to the sign-in page, signs in as
KILN_TEST_USER / KILN_TEST_PASSWORD and follows the redirect to the SDK's listener."""

import os
import sys


def sign_in(url: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=os.environ.get("KILN_CHROMIUM", "/usr/bin/chromium"),
            headless=True,
            args=["--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page()
        page.goto(url)
        page.get_by_label("User name").fill(os.environ["KILN_TEST_USER"])
        page.get_by_label("Password", exact=True).fill(os.environ["KILN_TEST_PASSWORD"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("http://localhost:8020/**", timeout=60_000)
        page.wait_for_load_state()
        with open(os.environ["KILN_BROWSER_LOG"], "w") as log:
            log.write(page.url + "\n" + page.content())
        browser.close()


if __name__ == "__main__":
    if os.fork() == 0:
        try:
            sign_in(sys.argv[1])
        finally:
            os._exit(0)
    sys.exit(0)
