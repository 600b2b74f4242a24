"""What a user does in the browser at the provider: sign in (and consent when asked), confirm logout."""

from __future__ import annotations

from playwright.async_api import Page

PASSWORD = "pw"


def at_provider(page: Page, issuer: str) -> bool:
    return page.url.startswith(issuer + "/")


async def sign_in(page: Page, issuer: str, login: str = "alice", password: str = PASSWORD) -> None:
    """On the provider's login page: sign in as ``login``, then confirm the consent page if one follows.
    Returns once the browser has left the provider's interaction pages (the caller waits for where).
    With the provider's step-up mode (``acr_values``) the password picks the login's acr ("mfa")."""
    await page.locator("input[name=login]").fill(login)
    await page.locator("input[name=password]").fill(password)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign-in").click()
    if at_provider(page, issuer) and await page.locator("input[name=prompt][value=consent]").count():
        async with page.expect_navigation():
            await page.get_by_role("button", name="Continue").click()


async def confirm_logout(page: Page) -> None:
    """On the provider's end-session page: press the "Yes, sign me out" button."""
    button = page.locator("button[name=logout]")
    await button.wait_for(state="visible")
    async with page.expect_navigation():
        await button.click()
