"""The status page and playground in a real browser: headless Chromium (Debian's `chromium`)
driven by Playwright, against the real router and the fake trtllm-serve backends.

One browser and one router for the module; tests run in file order (the first watches the
models start, the last stops one). Screenshots go to test-artifacts/ui/ (gitignored).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import NEMOTRON, QWEN, REPO, FakeBackend, finish_router, free_port, start_router, wait_for
from tests.fakes.trtllm_serve import REASONING, WORDS, think_prefix

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:   # reported by the browser fixture, as a failure rather than a skip
    expect = sync_playwright = None

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Playwright's own browser download is not used: Debian's chromium, quiet and offline.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "test-artifacts" / "ui"
ANSWER = " ".join(WORDS[:12])
STYLES = {"qwen": "qwen3", "nemotron": "nemotron"}   # --think-style of each fake below
STATE_WAIT_MS = 20_000   # the page polls every 2 s; the router probes every 0.1 s here


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        pytest.fail("playwright not installed: pip install -e '.[test]'")
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium not found: run `python scripts/check_system.py --install` (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def ui_stack(tmp_path_factory):
    """Router in front of both fakes, which are not started yet (the first test starts them)."""
    tmp = tmp_path_factory.mktemp("ui")
    fakes = {"qwen": FakeBackend(free_port(), QWEN, ["--reasoning-parser", "qwen3", "--think-style", "qwen3"]),
             "nemotron": FakeBackend(free_port(), NEMOTRON, ["--reasoning-parser", "nano-v3",
                                                             "--think-style", "nemotron"])}
    r = start_router(tmp / "router", {"qwen": [fakes["qwen"].addr], "nemotron": [fakes["nemotron"].addr]})
    r.allow_log = re.compile(r"connect\(\) failed|upstream prematurely closed|recv\(\) failed \(104")
    try:
        yield r, fakes
    finally:
        bad = finish_router(r, False)
        for fb in fakes.values():
            fb.stop()
    assert not bad, "\n".join(bad)


@pytest.fixture
def page(browser, ui_stack, request):
    r, _ = ui_stack
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(r.url + "/")
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def ensure_started(ui_stack):
    r, fakes = ui_stack
    stopped = [fb for fb in fakes.values() if fb.proc is None or fb.proc.poll() is not None]
    for fb in stopped:
        fb.start(wait=False)   # both at once: each takes seconds to import its web stack
    for fb in stopped:
        fb.wait_ready()
    wait_for(lambda: r.health()["status"] == "ready", "both models ready", 20, r.proc)


def card(page, model):
    return page.locator(f'.card[data-model="{model}"]')


def expect_state(page, model, state):
    expect(card(page, model)).to_have_attribute("data-state", state, timeout=STATE_WAIT_MS)


def send(page, model, text, thinking=True):
    page.select_option("#model", model)
    if page.is_enabled("#thinking"):
        page.set_checked("#thinking", thinking)
    page.fill("#prompt", text)
    page.click("#send")
    return page.locator(".turn.assistant").last


def released(page, turn, fake, total):
    """Let the gated fake send `total` stream events in all, and wait until the page read them."""
    fake.release(total - int(turn.get_attribute("data-events") or 0))
    page.wait_for_function("([el, n]) => Number(el.dataset.events || 0) >= n", arg=[turn.element_handle(), total])


def wait_done(turn):
    expect(turn.locator(".stats")).not_to_be_empty(timeout=STATE_WAIT_MS)


def test_the_cards_show_both_models_going_from_starting_to_ready(page, ui_stack):
    r, fakes = ui_stack
    for model in (QWEN, NEMOTRON):
        expect_state(page, model, "starting")
        expect(card(page, model).locator('[data-role="note"]')).to_contain_text("Still loading")
    ensure_started(ui_stack)
    for model in (QWEN, NEMOTRON):
        expect_state(page, model, "ready")
    expect(card(page, QWEN)).to_contain_text("Qwen3 30B-A3B (NVFP4)")
    expect(card(page, QWEN)).to_contain_text("qwen-nothink")


@pytest.mark.parametrize("model", ["qwen", "nemotron"])
def test_a_message_streams_in_with_the_reasoning_in_its_own_block(page, ui_stack, model):
    ensure_started(ui_stack)
    _, fakes = ui_stack
    fake = fakes[model]
    fake.control(gate=True)
    try:
        turn = send(page, model, "Tell me about foxes")
        answer, thought = turn.locator(".answer"), turn.locator(".reasoning .text")
        # One stream event per release, and the page counts the events it has read. First the
        # role chunk and every reasoning piece: the reasoning is complete, no answer yet.
        prefix = think_prefix(STYLES[model], SimpleNamespace(chat_template_kwargs=None, messages=[]))
        events = 1 + -(-len(prefix) // 3)
        released(page, turn, fake, events)
        assert thought.text_content() == REASONING + "\n" and answer.text_content() == ""
        # Then the answer, word by word: seen part-way, then longer.
        released(page, turn, fake, events + 1)
        first = answer.text_content()
        released(page, turn, fake, events + 2)
        assert first and len(first) < len(answer.text_content()) < len(ANSWER)
        # Mid-stream, reasoning open above a partial answer: the README's picture (docs/).
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"streaming-{model}.png"), full_page=True)
    finally:
        fake.control(gate=False)
        fake.release(200)
    wait_done(turn)
    assert answer.inner_text() == ANSWER
    reasoning = turn.locator(".reasoning")
    # Folded once the answer is complete, one click away.
    assert reasoning.is_visible() and reasoning.get_attribute("open") is None
    assert reasoning.locator(".text").text_content() == REASONING + "\n"
    assert "The user wants" not in answer.inner_text()
    stats = turn.locator(".stats").inner_text()
    assert re.search(r"TTFT [\d.]+ m?s · [\d.]+ tok/s · \d+ prompt \+ \d+ output tokens", stats), stats


def test_thinking_off_shows_no_reasoning_and_turns_keep_the_conversation(page, ui_stack):
    ensure_started(ui_stack)
    _, fakes = ui_stack
    page.fill("#system", "Be brief.")
    first = send(page, "qwen", "first question", thinking=False)
    wait_done(first)
    assert first.locator(".reasoning").is_hidden() and first.locator(".answer").inner_text() == ANSWER
    sent = json.loads(fakes["qwen"].requests()[-1]["body"])
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}
    second = send(page, "nemotron-nothink", "second question")
    wait_done(second)
    assert second.locator(".reasoning").is_hidden()
    sent = json.loads(fakes["nemotron"].requests()[-1]["body"])
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][2]["content"] == ANSWER   # the answer only, never the reasoning


def test_api_errors_are_shown_with_their_message(page, ui_stack):
    ensure_started(ui_stack)
    page.wait_for_selector("#model option", state="attached")
    page.evaluate("""() => { const o = document.createElement('option'); o.value = o.textContent = 'gpt-4o';
                             document.getElementById('model').append(o); }""")
    turn = send(page, "gpt-4o", "hello")
    err = turn.locator(".error")
    expect(err).to_contain_text("404 model_not_found: The model 'gpt-4o' does not exist")


def test_the_recent_requests_table_gains_a_row_without_the_prompt(page, ui_stack):
    ensure_started(ui_stack)
    r, _ = ui_stack
    secret = f"zebra-{uuid.uuid4().hex[:8]}"
    page.fill("#max-tokens", "7")   # thinking off: exactly 7 output tokens, which marks our row
    wait_done(send(page, "qwen", secret, thinking=False))
    top = page.locator("#recent-rows tr").first
    expect(top.locator("td").nth(5)).to_have_text("7", timeout=STATE_WAIT_MS)
    assert QWEN in top.inner_text() and "200" in top.inner_text()
    assert secret not in page.locator("#recent").inner_text()
    assert secret not in page.locator("#status").inner_text()
    assert secret not in r.get("/status").text


def test_a_stopped_backend_turns_its_card_down_and_a_request_to_it_shows_the_503(page, ui_stack):
    """Last: Nemotron stays down."""
    ensure_started(ui_stack)
    _, fakes = ui_stack
    expect_state(page, NEMOTRON, "ready")
    fakes["nemotron"].stop()
    expect_state(page, NEMOTRON, "down")
    expect_state(page, QWEN, "ready")
    turn = send(page, "nemotron", "are you there?")
    expect(turn.locator(".error")).to_contain_text("503 model_down")
