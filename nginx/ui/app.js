// Status page and playground of the router: plain browser JavaScript, no build step, no CDN.
// Reads GET /status (cards, recent requests) and GET /v1/models; the playground streams
// POST /v1/chat/completions with fetch() and reads its server-sent events as they arrive.
"use strict";

const POLL_MS = 2000;
const KEY_STORAGE = "llm-router.api-key";

const $ = (id) => document.getElementById(id);
const state = { models: [], history: [], controller: null, pollTimer: null, pollRound: 0 };

// ------------------------------------------------------------------------------ helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function apiKey() {
  try { return localStorage.getItem(KEY_STORAGE) || ""; } catch (_) { return ""; }
}

function headers(extra) {
  const h = Object.assign({}, extra);
  const key = apiKey();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

// The API's own error message ({"error": {"message", "code"}}), else the HTTP status.
async function errorOf(resp) {
  let text = "";
  try { text = await resp.text(); } catch (_) { /* connection gone */ }
  try {
    const err = JSON.parse(text).error;
    if (err && err.message) return { status: resp.status, code: err.code || null, message: err.message };
  } catch (_) { /* not JSON */ }
  return { status: resp.status, code: null, message: text.trim() || resp.statusText || "request failed" };
}

function askForKey(message) {
  $("key-form").hidden = false;
  showBanner(message + " Enter an API key above.");
}

// `from` names who raised it, so that the status poll clears only its own messages.
function showBanner(text, from) {
  const b = $("banner");
  b.textContent = text || "";
  b.hidden = !text;
  b.dataset.from = from || "";
}

function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + String(s % 60).padStart(2, "0") + " s";
  return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " min";
}

// Lists from the router: Debian's lua-cjson writes an empty one as {} (or leaves it out).
const list = (v) => (Array.isArray(v) ? v : []);
const num = (v, digits) => (v == null || !isFinite(v) ? "–" : Number(v).toFixed(digits));
const ms = (v) => (v == null ? "–" : v < 1000 ? Math.round(v) + " ms" : (v / 1000).toFixed(2) + " s");

// ------------------------------------------------------------------------------ status

function metric(label, value, name) {
  return el("div", { class: "metric", dataset: { metric: name } }, el("span", { class: "label" }, label),
    el("span", { class: "value" }, value));
}

function card(m, now) {
  const since = m.since != null ? now - m.since : null;
  const stateText = m.state === "starting" ? "starting" : m.state;
  const why = m.state !== "ready" && list(m.upstreams).map((u) => u.reason).find((r) => r);
  let note;
  if (m.state === "starting") {
    note = "Still loading" + (since != null ? " – " + duration(since) + " so far" : "") +
      ". Requests get 503 model_starting" + (m.wait_for_ready_s > 0 ? " after waiting up to " + m.wait_for_ready_s + " s" : "") + ".";
  } else if (m.state === "down") {
    note = "Down" + (since != null ? " for " + duration(since) : "") + (why ? ": " + why : "") + ".";
  } else {
    note = "Ready" + (since != null ? " for " + duration(since) : "") + ".";
  }
  const w = m.window || {};
  const names = [m.id, ...list(m.aliases)].join(", ");
  const variants = list(m.variants).map((v) => v.id).join(", ");
  return el("article", { class: "card state-" + m.state, dataset: { model: m.id, state: m.state } },
    el("header", {},
      el("h3", {}, m.name || m.id),
      el("span", { class: "badge", dataset: { role: "state" } }, stateText)),
    el("p", { class: "note", dataset: { role: "note" } }, note),
    el("p", { class: "names" }, "Names: ", el("code", {}, names),
      variants ? el("span", {}, " · variants: ", el("code", {}, variants)) : null),
    el("div", { class: "metrics" },
      metric("in flight", m.in_flight ?? 0, "in_flight"),
      metric("waiting for ready", m.waiting ?? 0, "waiting"),
      metric("output tok/s", num(w.output_tokens_per_s, 1), "tok_s"),
      metric("TTFT p50", ms(w.ttft_p50_ms), "ttft"),
      metric("ITL p50", ms(w.itl_p50_ms), "itl"),
      metric("requests / errors", (w.requests ?? 0) + " / " + (w.errors ?? 0), "errors")),
    el("ul", { class: "upstreams" }, list(m.upstreams).map((u) =>
      el("li", { class: "state-" + u.state }, el("code", {}, u.address), " ", u.state,
        u.reason ? el("span", { class: "reason" }, " – " + u.reason) : null))));
}

function renderStatus(s) {
  const now = s.time;
  $("cards").replaceChildren(...list(s.models).map((m) => card(m, now)));
  const win = s.window_s ? " · figures over the last " + s.window_s + " s" : "";
  $("status-updated").textContent = "updated " + new Date(now * 1000).toLocaleTimeString() + win +
    (s.metrics === false ? " · metrics off (ROUTER_METRICS=off)" : "");
  $("recent-rows").replaceChildren(...list(s.recent).map((r) => el("tr", {},
    el("td", {}, new Date(r.time * 1000).toLocaleTimeString()),
    el("td", {}, r.model),
    el("td", {}, r.key || "–"),
    el("td", { class: r.status >= 400 ? "bad" : "" }, r.status),
    el("td", {}, r.prompt_tokens ?? "–"),
    el("td", {}, r.output_tokens ?? "–"),
    el("td", {}, ms(r.ttft_ms)),
    el("td", {}, num(r.tokens_per_s, 1)),
    el("td", {}, ms(r.duration_ms)),
    el("td", {}, r.client_abort ? "yes" : ""))));
}

async function poll() {
  clearTimeout(state.pollTimer);
  const round = ++state.pollRound;   // a poll started meanwhile (after a send) takes over the timer
  try {
    const resp = await fetch("/status", { headers: headers(), cache: "no-store" });
    if (resp.status === 401) {
      askForKey((await errorOf(resp)).message);
    } else if (!resp.ok) {
      showBanner("Status: " + (await errorOf(resp)).message, "poll");
    } else {
      renderStatus(await resp.json());
      if ($("banner").dataset.from === "poll") showBanner("");
      if (!state.models.length) loadModels();
    }
  } catch (err) {
    showBanner("The router does not answer (" + err.message + "); retrying.", "poll");
  }
  if (round === state.pollRound && !document.hidden) state.pollTimer = setTimeout(poll, POLL_MS);
}

// ------------------------------------------------------------------------------ models

async function loadModels() {
  const resp = await fetch("/v1/models", { headers: headers() });
  if (resp.status === 401) return askForKey((await errorOf(resp)).message);
  if (!resp.ok) return;
  state.models = list((await resp.json()).data);
  const select = $("model");
  const previous = select.value;
  select.replaceChildren();
  for (const m of state.models) {
    const group = el("optgroup", { label: m.name || m.id });
    group.append(el("option", { value: m.id }, m.id));
    for (const a of list(m.aliases)) group.append(el("option", { value: a }, a));
    select.append(group);
  }
  if (previous) select.value = previous;
  syncThinking();
}

// A variant fixes thinking (e.g. qwen-nothink): the toggle shows that and is not editable.
function syncThinking() {
  const entry = state.models.find((m) => m.id === $("model").value);
  const box = $("thinking");
  if (entry && entry.thinking != null) {
    box.checked = entry.thinking;
    box.disabled = true;
  } else {
    box.disabled = false;
  }
}

// ------------------------------------------------------------------------------ playground

function addTurn(role, text) {
  const node = el("div", { class: "turn " + role, dataset: { role } });
  if (role === "user") node.append(el("div", { class: "text" }, text));
  $("conversation").append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

// One assistant turn: reasoning in a collapsible block, the answer apart, stats under it.
function assistantTurn() {
  const node = addTurn("assistant");
  const reasoning = el("details", { class: "reasoning", hidden: true, open: true },
    el("summary", {}, "Reasoning"), el("div", { class: "text" }));
  const answer = el("div", { class: "answer text" });
  const stats = el("div", { class: "stats" });
  node.append(reasoning, answer, stats);
  return { node, reasoning, reasoningText: reasoning.querySelector(".text"), answer, stats };
}

function showError(turn, err) {
  turn.node.append(el("div", { class: "error", dataset: { status: err.status, code: err.code || "" } },
    (err.status ? err.status + (err.code ? " " + err.code : "") + ": " : "") + err.message));
}

// Server-sent events from a fetch() body: yields each `data:` payload as it completes.
async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.search(/\r?\n\r?\n/)) !== -1) {
      const event = buf.slice(0, cut);
      buf = buf.slice(cut + (buf[cut] === "\r" ? 4 : 2));
      const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(l[5] === " " ? 6 : 5)).join("\n");
      if (data) yield data;
    }
  }
}

function requestBody(model) {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...state.history);
  const body = { model, messages, stream: true, stream_options: { include_usage: true } };
  const entry = state.models.find((m) => m.id === model);
  if (!(entry && entry.thinking != null)) {
    // The router's one switch: it becomes each model's own (template kwargs, /no_think, ...).
    body.chat_template_kwargs = { enable_thinking: $("thinking").checked };
  }
  const t = $("temperature").value;
  if (t !== "") body.temperature = Number(t);
  const max = $("max-tokens").value;
  if (max !== "") body.max_tokens = Number(max);
  return body;
}

async function send(event) {
  event.preventDefault();
  const text = $("prompt").value.trim();
  const model = $("model").value;
  if (!text || !model || state.controller) return;
  state.history.push({ role: "user", content: text });
  addTurn("user", text);
  $("prompt").value = "";
  const turn = assistantTurn();
  const controller = new AbortController();
  state.controller = controller;
  $("send").disabled = true;
  $("stop").disabled = false;

  const t0 = performance.now();
  let tFirst = null, tLast = null, events = 0, usage = null, answer = "", reasoning = "";
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST", signal: controller.signal,
      headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(requestBody(model)),
    });
    if (!resp.ok) {
      const err = await errorOf(resp);
      if (resp.status === 401) askForKey(err.message);
      state.history.pop();
      return showError(turn, err);
    }
    let received = 0;
    for await (const data of sseData(resp.body)) {
      turn.node.dataset.events = ++received;   // events read so far (tests follow the stream by it)
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) { showError(turn, { status: null, message: chunk.error.message || data }); break; }
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        const d = choice.delta || {};
        const r = d.reasoning_content ?? d.reasoning ?? "";
        const c = d.content ?? "";
        if (!r && !c) continue;
        tLast = performance.now();
        if (tFirst === null) tFirst = tLast;
        events += 1;
        if (r) { reasoning += r; turn.reasoningText.textContent = reasoning; turn.reasoning.hidden = false; }
        if (c) { answer += c; turn.answer.textContent = answer; }
      }
    }
    if (reasoning && answer) turn.reasoning.open = false;   // answer arrived: fold the thinking away
  } catch (err) {
    if (err.name !== "AbortError") showError(turn, { status: null, message: err.message });
    else turn.node.append(el("div", { class: "stopped" }, "stopped"));
  } finally {
    state.controller = null;
    $("send").disabled = false;
    $("stop").disabled = true;
    if (tFirst !== null) {
      state.history.push({ role: "assistant", content: answer });
      const out = usage ? usage.completion_tokens : events;
      const span = (tLast - tFirst) / 1000;
      const rate = span > 0 && out > 1 ? (out - 1) / span : null;
      turn.stats.textContent = "TTFT " + ms(tFirst - t0) + " · " + num(rate, 1) + " tok/s · " +
        (usage ? usage.prompt_tokens + " prompt + " + usage.completion_tokens + " output tokens"
          : events + " events (no usage reported)");
    } else if (state.history.length && state.history[state.history.length - 1].role === "user") {
      state.history.pop();   // nothing came back: the turn is not part of the conversation
    }
    poll();
  }
}

// ------------------------------------------------------------------------------ wiring

function init() {
  $("chat-form").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("chat-form").requestSubmit();
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("clear").addEventListener("click", () => { state.history = []; $("conversation").replaceChildren(); });
  $("model").addEventListener("change", syncThinking);
  $("key-toggle").addEventListener("click", () => { $("key-form").hidden = !$("key-form").hidden; });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    try { localStorage.setItem(KEY_STORAGE, $("key-input").value.trim()); } catch (_) { /* private mode */ }
    $("key-input").value = "";
    $("key-form").hidden = true;
    showBanner("");
    loadModels();
    poll();
  });
  $("key-forget").addEventListener("click", () => {
    try { localStorage.removeItem(KEY_STORAGE); } catch (_) { /* private mode */ }
  });
  document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
  loadModels();
  poll();
}

init();
