#include "llm4sbr/serve/web_page.hpp"

namespace llm4sbr::serve {

namespace {

// Stable ids and classes (#query, .search-result, #session li, .recommendation, .view .intent-text, #error,
// #answer[data-state][data-session-size]) are what tests/serve/web_page_test.cpp drives: keep them.
constexpr std::string_view kPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<!-- Only this server: no CDN, no web fonts, no trackers. -->
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self';
               img-src data:; base-uri 'none'; form-action 'none'">
<link rel="icon" href="data:,">
<title>llm4sbr: session recommendations</title>
<style>
  :root { --fg: #1d2430; --muted: #667085; --line: #e3e7ee; --bg: #f6f7f9; --accent: #2f5bd3; --warn: #a15c00; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
         background: var(--bg); }
  header { padding: 12px 20px; background: #fff; border-bottom: 1px solid var(--line); display: flex; gap: 16px;
           align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header .model { color: var(--muted); }
  main { display: grid; grid-template-columns: minmax(260px, 1fr) minmax(300px, 1.2fr) minmax(300px, 1.2fr);
         gap: 16px; padding: 16px 20px; align-items: start; }
  @media (max-width: 900px) { main { grid-template-columns: 1fr; } }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  h3 { font-size: 14px; margin: 12px 0 4px; }
  input[type=search] { width: 100%; padding: 8px 10px; font: inherit; border: 1px solid #c8ceda; border-radius: 6px; }
  ul, ol { margin: 0; padding: 0; list-style: none; }
  li { padding: 5px 6px; border-bottom: 1px solid var(--line); display: flex; gap: 8px; align-items: baseline; }
  li .title { flex: 1; min-width: 0; overflow-wrap: anywhere; }
  /* Catalogue titles run to 300 characters: two lines in lists, the whole title on hover. */
  li .title { display: -webkit-box; -webkit-box-orient: vertical; -webkit-line-clamp: 2; overflow: hidden; }
  li .id, li .num, .hint, .empty { color: var(--muted); font-size: 12px; }
  li .num { font-variant-numeric: tabular-nums; white-space: nowrap; }
  [role=button] { cursor: pointer; }
  [role=button]:hover, [role=button]:focus { background: #eef2fc; outline: none; }
  #recommendations { counter-reset: rank; }
  #recommendations li::before { counter-increment: rank; content: counter(rank) "."; color: var(--muted);
                                min-width: 22px; }
  button { font: inherit; border: 1px solid #c8ceda; background: #fff; border-radius: 6px; padding: 2px 8px;
           cursor: pointer; }
  button:disabled { opacity: .5; cursor: default; }
  .row { display: flex; justify-content: space-between; align-items: baseline; gap: 8px; }
  #error { background: #fdecec; color: #8a1c1c; border: 1px solid #f3b8b8; border-radius: 6px; padding: 8px 10px;
           margin: 0 20px; white-space: pre-wrap; }
  #error:not([hidden]) { margin-top: 12px; }
  .flag { display: inline-block; background: #fff4e0; color: var(--warn); border-radius: 10px; padding: 1px 8px;
          margin: 0 4px 4px 0; font-size: 12px; }
  .view { border-top: 1px solid var(--line); padding-top: 4px; }
  .view:first-of-type { border-top: 0; }
  .intent-text { margin: 4px 0 6px; padding: 6px 8px; background: var(--bg); border-radius: 6px;
                 overflow-wrap: anywhere; max-height: 9.5em; overflow-y: auto; }
  .gate { color: var(--muted); font-weight: normal; font-size: 12px; }
  #answer[data-state=loading] #recommendations { opacity: .6; }
  #answer { margin-top: 14px; }
</style>
</head>
<body>
<header><h1>llm4sbr</h1><span class="model" id="model"></span></header>
<div id="error" role="alert" hidden></div>
<main>
  <section aria-labelledby="search-heading">
    <h2 id="search-heading">Search the catalogue</h2>
    <input id="query" type="search" placeholder="a word of a title, e.g. lip gloss" autocomplete="off" autofocus>
    <p class="hint">Click an item to add it to the session.</p>
    <ul id="search-results" aria-live="polite"></ul>
  </section>
  <section aria-labelledby="session-heading">
    <div class="row"><h2 id="session-heading">Session</h2><button id="clear" type="button" disabled>Clear</button></div>
    <p class="empty" id="session-empty">No clicks yet: the recommendations below are the most clicked items.</p>
    <ol id="session"></ol>
    <div id="answer" data-state="idle">
      <div class="row"><h2>Recommended next</h2><span class="hint" id="took"></span></div>
      <div id="flags"></div>
      <ol id="recommendations"></ol>
    </div>
  </section>
  <section aria-labelledby="intent-heading">
    <h2 id="intent-heading">Why: the session's intents</h2>
    <p class="hint">Intent source: <span id="intent-source">–</span>. The gate is how much a view weighed in the
      session's representation (the larger, the more).</p>
    <div id="views"></div>
  </section>
</main>
<script>
"use strict";
const $ = (selector) => document.querySelector(selector);
const session = [];                // the clicked items {id, title}, oldest first
const errors = { search: "", recommend: "" };
let searchSeq = 0, recommendSeq = 0, searchTimer = null;

// Builds an element; string children become text nodes (append never parses HTML), so data stays text.
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const number = (x, digits) => (typeof x === "number" ? x.toFixed(digits) : "–");

function setError(kind, message) {
  errors[kind] = message;
  const text = Object.values(errors).filter(Boolean).join("\n");
  $("#error").textContent = text;
  $("#error").hidden = !text;
}

// fetch, then the JSON body; a 4xx/5xx throws with the server's {"error": ...}.
async function getJson(url, options) {
  let res;
  try {
    res = await fetch(url, options);
  } catch (e) {
    throw new Error(`cannot reach the server (${e.message})`);
  }
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON: reported below */ }
  if (!res.ok) {
    throw new Error(`${res.status}: ${body && typeof body.error === "string" ? body.error : res.statusText}`);
  }
  if (body === null) throw new Error(`${url}: the answer is not JSON`);
  return body;
}

// A title, cut to two lines by the CSS; the whole title as its tooltip.
const titleOf = (item) => el("span", { class: "title", title: item.title }, item.title);

// An item a click adds to the session (search results and recommendations).
function clickable(item, className, ...extra) {
  return el("li", { class: className, role: "button", tabindex: "0", "data-id": item.id,
                    "aria-label": `add to the session: ${item.title}`, onclick: () => addToSession(item) },
            titleOf(item), ...extra);
}

async function search() {
  const query = $("#query").value.trim();
  const seq = ++searchSeq;
  const list = $("#search-results");
  if (!query) {
    list.replaceChildren();
    list.dataset.query = "";
    setError("search", "");
    return;
  }
  try {
    const answer = await getJson(`/v1/items?query=${encodeURIComponent(query)}&limit=20`);
    if (seq !== searchSeq) return;  // a later query is on its way
    setError("search", "");
    list.replaceChildren(...answer.items.map((item) =>
      clickable(item, "search-result", el("span", { class: "id" }, item.id))));
    if (!answer.items.length) list.append(el("li", { class: "empty" }, "No title contains every word."));
    list.dataset.query = query;
  } catch (e) {
    if (seq === searchSeq) setError("search", `search: ${e.message}`);
  }
}

function addToSession(item) {
  session.push({ id: item.id, title: item.title });
  sessionChanged();
}

function sessionChanged() {
  $("#session").replaceChildren(...session.map((item, i) =>
    el("li", { "data-id": item.id },
       titleOf(item),
       el("button", { class: "remove", type: "button", "aria-label": "remove from the session", title: "remove",
                      onclick: () => { session.splice(i, 1); sessionChanged(); } }, "×"))));
  $("#clear").disabled = session.length === 0;
  $("#session-empty").hidden = session.length > 0;
  recommend();
}

async function recommend() {
  const seq = ++recommendSeq;
  const ids = session.map((item) => item.id);
  $("#answer").dataset.state = "loading";
  try {
    const answer = await getJson("/v1/recommend", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ items: ids, k: 20, explain: true }) });
    if (seq !== recommendSeq) return;  // the session changed meanwhile: its own answer comes
    setError("recommend", "");
    showAnswer(answer, ids.length);
  } catch (e) {
    if (seq !== recommendSeq) return;
    setError("recommend", `recommend: ${e.message}`);
    showAnswer({ items: [], intent: {} }, ids.length);  // the last answer was for another session
    $("#answer").dataset.state = "error";
  }
}

function showAnswer(answer, sessionSize) {
  $("#recommendations").replaceChildren(...answer.items.map((item) =>
    clickable(item, "recommendation", el("span", { class: "num score", title: "score (null: popularity fallback)" },
                                         number(item.score, 3)))));
  $("#flags").replaceChildren(...(answer.flags || []).map((flag) => el("span", { class: "flag" }, flag)));
  $("#took").textContent = typeof answer.took_ms === "number" ? `${answer.took_ms.toFixed(1)} ms` : "";
  const intent = answer.intent || {};
  $("#intent-source").textContent = intent.source || "–";
  const views = Object.entries(intent.views || {});
  $("#views").replaceChildren(...views.map(([name, view]) =>
    el("div", { class: "view", "data-view": name },
       el("h3", {}, `${name} view `, el("span", { class: "gate" }, `gate ${number(view.gate, 3)}`)),
       el("p", { class: "intent-text" }, view.text || "(no intent text)"),
       el("ul", { class: "localized" }, ...(view.items || []).map((item) =>
         el("li", { class: "localized-item", "data-id": item.id },
            titleOf(item),
            el("span", { class: "num", title: "cosine similarity to the intent" }, number(item.similarity, 3))))))));
  if (!views.length) $("#views").append(el("p", { class: "empty" }, "No intents for this session."));
  const box = $("#answer");
  box.dataset.sessionSize = String(sessionSize);
  box.dataset.state = "ready";
}

$("#query").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(search, 200);  // debounced: one request once typing pauses
});
$("#clear").addEventListener("click", () => { session.length = 0; sessionChanged(); });
// Enter or space on a focused item clicks it, as on a button.
document.addEventListener("keydown", (e) => {
  if ((e.key === "Enter" || e.key === " ") && e.target.matches("[role=button]")) {
    e.preventDefault();
    e.target.click();
  }
});
getJson("/readyz").then((r) => { $("#model").textContent = r.model || ""; }, () => {});
sessionChanged();  // an empty session: the most clicked items
</script>
</body>
</html>
)html";

}  // namespace

std::string_view web_page() { return kPage; }

}  // namespace llm4sbr::serve
