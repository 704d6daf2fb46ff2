"""`GET /dashboard` in a real browser: headless Chromium (the system's, driven by Playwright) against the
app served by uvicorn with `API_TOKENS` set, on the session stack's PostgreSQL, RabbitMQ and workers.

The first test builds a state with a task in every status and two real dead letters (jobs that failed
on a worker and were dead-lettered by RabbitMQ), signs in through the form, checks that every number
the page shows is the API's (`GET /queues`), replays one dead letter with its button and sees the DLQ
count drop (on the page and in the API), cancels a running task with its button, and saves a
screenshot in the run directory. The second plants `<script>` and `onerror=` in a payload, an error
message and a DLQ message, and checks that the page shows them as text and runs none of them.

Chromium is a declared dependency (`./dev setup` installs it); a missing one fails with the fix.
Playwright never downloads a browser here: it launches `/usr/bin/chromium` by its path.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from harness.stack.base import StackEndpoints, StackProvider
from harness.stack.local import LocalStack
from harness.stack.processes import ManagedProcess
from service.db.pool import create_pool
from service.models import Status
from tests.integration.test_api import park_task
from tests.integration.test_streams import served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = "dashboard-browser-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
MISSING = "headless Chromium is needed: `apt-get install -y chromium` (./dev setup does it)"
SETTLE_S = 40.0
SHOWN_WITHIN_MS = 10_000
DLQ = "ast.jobs.dlq"
PARKED_WORKER = "worker-dashboard-test"
# Dead-lettered at once by a worker: a terminal failure in the second of two 50 ms steps.
TERMINAL = {"type": "simulate", "payload": {"durationMs": 100, "steps": 2, "outcome": "terminal"}}
SUCCESS = {"type": "simulate", "payload": {"durationMs": 50, "steps": 2}}
XSS = "<script>window.__xss = 1</script>"
XSS_IMG = '<img src="x" onerror="window.__xss = 2">'


def system_chromium() -> str:
    found = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if found is None:
        pytest.fail(MISSING, pytrace=False)
    return found


@pytest.fixture
async def db(clean_state: StackEndpoints) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await create_pool(clean_state.postgres_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def site(clean_state: StackEndpoints) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a bearer token and the management URL, on a real uvicorn; a client that sends
    the token (the API's view, to compare the page with)."""
    async with served(clean_state, api_tokens=[TOKEN], rabbit_management_url=clean_state.management_url) as (
        _, http,
    ):
        http.headers.update(BEARER)
        yield http


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=system_chromium(), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def pause_workers(stack: StackProvider) -> Iterator[Callable[[], None]]:
    """Stops the workers (SIGSTOP) when called, until the test ends: a replayed job would otherwise
    fail again into the DLQ at once, and no status moves while the numbers are compared."""
    if not isinstance(stack, LocalStack):
        pytest.skip("pausing the workers needs the embedded stack's process handles")
    workers = [service.process for service in stack.workers.values()]
    paused: list[ManagedProcess] = []

    def pause() -> None:
        for process in workers:
            process.pause()
            paused.append(process)

    try:
        yield pause
    finally:
        for process in paused:
            process.resume()


async def sign_in(browser: Browser, base_url: str) -> Page:
    """Opens /dashboard with no session: sent to the form; a wrong token is refused; the right one
    lands on the dashboard with the token in no URL and no script-readable cookie."""
    page = await browser.new_page(viewport={"width": 1280, "height": 1600})
    await page.goto(f"{base_url}/dashboard")
    assert page.url == f"{base_url}/dashboard/login"
    await page.fill("#token", "not-the-token")
    await page.click("button[type=submit]")
    await expect(page.locator("#login-error")).to_be_visible()
    await page.fill("#token", TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base_url}/dashboard")
    assert TOKEN not in page.url
    assert await page.evaluate("document.cookie") == "", "the session cookie must be HttpOnly"
    await expect(page.locator("#live-status")).to_have_text("live, every 1 s")
    return page


async def queues_report(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/queues")
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def dlq_depth(report: dict[str, Any]) -> int:
    return int(next(q["messages"] for q in report["queues"] if q["name"] == DLQ))


async def submitted(http: httpx.AsyncClient, body: dict[str, Any]) -> uuid.UUID:
    response = await http.post("/tasks", json=body)
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["taskId"])


async def settled(http: httpx.AsyncClient, want: dict[uuid.UUID, str], dead_letters: int) -> None:
    """Bounded wait until the real jobs reach their status and RabbitMQ holds their dead letters."""
    wanted = {str(t): s for t, s in want.items()}
    seen: tuple[dict[str, str], int] = ({}, -1)
    try:
        async with asyncio.timeout(SETTLE_S):
            while seen != (wanted, dead_letters):
                await asyncio.sleep(0.2)
                statuses = {str(t): (await http.get(f"/tasks/{t}")).json()["status"] for t in want}
                seen = (statuses, dlq_depth(await queues_report(http)))
    except TimeoutError:
        pytest.fail(f"not settled in {SETTLE_S}s: statuses and DLQ depth {seen}, wanted {wanted}",
                    pytrace=False)


async def a_task_in_every_status(http: httpx.AsyncClient, db: asyncpg.Pool[Any]) -> dict[str, uuid.UUID]:
    """Real jobs for COMPLETED and FAILED (two dead letters), CANCELLED through the API, and parked rows
    (no job message) for the statuses a worker passes through: one IN_PROGRESS under a live lease."""
    tasks = {status.value: await park_task(db, status) for status in
             (Status.PENDING, Status.RETRYING, Status.WAITING_FOR_EVENT)}
    tasks["IN_PROGRESS"] = await park_task(
        db, Status.IN_PROGRESS, locked_by=PARKED_WORKER, started_at=datetime.now(UTC),
        lease_until=datetime.now(UTC) + timedelta(minutes=2), attempt=1,
    )
    to_cancel = await park_task(db, Status.WAITING_FOR_EVENT)
    assert (await http.post(f"/tasks/{to_cancel}/cancel")).status_code == 202
    tasks["CANCELLED"] = to_cancel
    tasks["COMPLETED"] = await submitted(http, SUCCESS)
    failed = [await submitted(http, TERMINAL) for _ in range(2)]
    tasks["FAILED"] = failed[0]
    await settled(http, {tasks["COMPLETED"]: "COMPLETED", failed[0]: "FAILED", failed[1]: "FAILED"}, 2)
    return tasks


async def page_matches_api(page: Page, http: httpx.AsyncClient) -> dict[str, Any]:
    """Every count on the page is the API's: tasks by status, and each queue's ready count and consumers."""
    report = await queues_report(http)
    for status, count in report["tasks"].items():
        shown = page.locator(f'[data-status="{status}"]')
        await expect(shown).to_have_text(str(count), timeout=SHOWN_WITHIN_MS)
    for queue in report["queues"]:
        row = page.locator(f'tr[data-queue="{queue["name"]}"]')
        await expect(row.locator('[data-field="ready"]')).to_have_text(f'{queue["messages"]:,}')
        await expect(row.locator('[data-field="consumers"]')).to_have_text(f'{queue["consumers"]:,}')
    await expect(page.locator("#dlq-depth")).to_have_text(str(dlq_depth(report)))
    return report


async def test_the_dashboard_shows_the_apis_numbers_and_its_buttons_replay_and_cancel(
    site: httpx.AsyncClient, db: asyncpg.Pool[Any], browser: Browser, run_dir: Path,
    pause_workers: Callable[[], None],
) -> None:
    tasks = await a_task_in_every_status(site, db)
    pause_workers()
    page = await sign_in(browser, str(site.base_url).rstrip("/"))
    report = await page_matches_api(page, site)
    assert all(report["tasks"][status] >= 1 for status in tasks), report["tasks"]
    assert dlq_depth(report) == 2

    dead = page.locator("tr.dead-letter")
    await expect(dead).to_have_count(2)
    await expect(dead.first).to_contain_text("rejected from ast.simulate.q")
    failure = page.locator("tr.failure", has_text=str(tasks["FAILED"])[:8])
    await expect(failure).to_contain_text("SIMULATED_TERMINAL")
    running = page.locator(f'tr[data-worker="{PARKED_WORKER}"]')
    await expect(running.locator("td").nth(1)).to_have_text("1")

    screenshot = run_dir / "dashboard.png"
    await page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 20_000, "the screenshot is too small to hold the rendered page"
    print(f"\nscreenshot of the dashboard: {screenshot}")

    await dead.first.locator('button[data-action="replay"]').click()
    await expect(page.locator("#flash")).to_have_text("replayed 1, kept 1")  # the other one stays
    await expect(page.locator("#dlq-depth")).to_have_text("1", timeout=SHOWN_WITHIN_MS)
    assert dlq_depth(await queues_report(site)) == 1

    await running.locator('button[data-action="cancel"]').click()
    await expect(page.locator("#flash")).to_have_text(f'cancelled {tasks["IN_PROGRESS"]}')
    assert (await site.get(f'/tasks/{tasks["IN_PROGRESS"]}')).json()["status"] == "CANCELLED"
    await expect(running).to_have_count(0, timeout=SHOWN_WITHIN_MS)

    await page.locator(f'a[href="/dashboard/tasks/{tasks["FAILED"]}"]').first.click()
    api_task = (await site.get(f'/tasks/{tasks["FAILED"]}')).json()
    await expect(page.locator("#task-status")).to_have_text(api_task["status"])
    await expect(page.locator("#error-code")).to_have_text(api_task["error"]["code"])
    await expect(page.locator("tr.event").first).to_be_visible()


async def dead_letter(amqp_url: str, body: dict[str, Any], reason: str) -> None:
    """A message straight into the DLQ, as a hostile or broken producer could leave one."""
    connection = await aio_pika.connect(amqp_url.split(",")[0])
    async with connection:
        channel = await connection.channel()
        message = aio_pika.Message(json.dumps(body).encode(), headers={"x-ast-reason": reason})
        await channel.default_exchange.publish(message, routing_key=DLQ)


async def test_markup_in_payloads_errors_and_dead_letters_shows_as_text(
    site: httpx.AsyncClient, db: asyncpg.Pool[Any], browser: Browser, clean_state: StackEndpoints,
) -> None:
    waiting = await park_task(db, Status.WAITING_FOR_EVENT, payload={
        "durationMs": 5, "waitForEvent": {"type": XSS, "key": XSS_IMG}})
    failed = await park_task(db, Status.FAILED, error={"code": XSS_IMG, "message": XSS})
    await dead_letter(clean_state.amqp_url, {"taskId": str(uuid.uuid4()), "type": XSS_IMG}, XSS)
    dialogs: list[str] = []
    page = await sign_in(browser, str(site.base_url).rstrip("/"))
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))

    failure = page.locator("tr.failure", has_text=str(failed)[:8])
    await expect(failure).to_contain_text(XSS, timeout=SHOWN_WITHIN_MS)
    await expect(failure).to_contain_text(XSS_IMG)
    await expect(page.locator("tr.dead-letter").first).to_contain_text(XSS, timeout=SHOWN_WITHIN_MS)
    await expect(page.locator("tr.dead-letter").first).to_contain_text(XSS_IMG)
    await page.wait_for_timeout(2_000)  # two more live refreshes through innerHTML

    await page.goto(f"{str(site.base_url).rstrip('/')}/dashboard/tasks/{waiting}")
    payload = json.loads(await page.locator("#payload").inner_text())
    assert payload["waitForEvent"] == {"type": XSS, "key": XSS_IMG}
    await page.goto(f"{str(site.base_url).rstrip('/')}/dashboard/tasks/{failed}")
    await expect(page.locator("#error-message")).to_have_text(XSS)
    await expect(page.locator("#error-code")).to_have_text(XSS_IMG)

    assert await page.evaluate("window.__xss") is None
    assert await page.locator('img[src="x"], main script').count() == 0
    assert dialogs == []
