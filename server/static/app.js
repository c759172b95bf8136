// The page of `attn serve`: run the loaded models and explore their attention.
// Plain JavaScript and SVG, no dependencies; it talks only to this server's JSON API.
"use strict";

const DOING = { translate: "Translating", summarize: "Summarizing", sentiment: "Classifying" };
// Per map kind: its names, what its rows and columns are (the axes of `attn attention`).
const KINDS = {
  cross: {
    short: "Cross-attention",
    name: "Cross-attention",
    rows: "Output",
    cols: "Source",
    what: "each output piece (row) over the source pieces (columns)",
  },
  encoder: {
    short: "Encoder self",
    name: "Encoder self-attention",
    rows: "Source (reading)",
    cols: "Source (read)",
    what: "each source piece (row) over the source pieces (columns)",
  },
  decoder: {
    short: "Decoder self",
    name: "Decoder masked self-attention",
    rows: "Output",
    cols: "Read so far",
    what: "each output step (row) over the pieces it has read (columns); later ones are masked",
  },
};
const TOKENS = { source: "source_tokens", target: "target_tokens", output: "output_tokens" };
// ColorBrewer "Blues": a single-hue sequential scale that reads the same to colour-blind eyes.
const BLUES = ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6",
  "#4292c6", "#2171b5", "#08519c", "#08306b"];
const GRID = "#d0d7de";
const WORD = "\u2581"; // SentencePiece's mark of a piece that starts a word
const SVG = "http://www.w3.org/2000/svg"; // a namespace name; nothing is fetched from it
const $ = (id) => document.getElementById(id);

const state = {
  models: {}, // task -> what /health says of its model
  limits: null,
  task: null, // the chosen model's task
  busy: false,
  fileBusy: false, // a file is being translated
  fileStarted: 0, // when (Date.now())
  fileUrl: "", // the object URL of the last translated file
  key: "", // the API key, where sessionStorage is not available
  explorer: null, // { data, maps: Map(key -> map), layers: {kind: n}, heads }
  view: { kind: "cross", layer: 0, head: "mean" },
  focus: null, // { r, c } (either or both): what the pointer or the keyboard is on
  pinned: null, // the focus a click or tap fixed
  cursor: { r: 0, c: 0 }, // the heatmap's keyboard cell
};

// --- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The API key, when the server asks for one: kept in this tab's sessionStorage only.
const KEY_STORE = "attn-api-key";

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORE) || "";
  } catch (e) {
    return state.key || ""; // storage refused (a private window, say): the page's memory
  }
}

function setApiKey(key) {
  state.key = key;
  try {
    sessionStorage.setItem(KEY_STORE, key);
  } catch (e) {
    // kept in state.key alone
  }
}

// GET `path`, or POST `body` as JSON; the response, once its status is OK (else ApiError).
async function send(path, body) {
  const headers = {};
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "The server could not be reached. Is attn serve still running?");
  }
  if (!response.ok) {
    throw new ApiError(response.status, explain(response.status, await readJson(response)));
  }
  return response;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch (e) {
    return null; // not JSON (a proxy's page, say): the status alone is reported
  }
}

async function api(path, body) {
  const response = await send(path, body);
  const data = await readJson(response);
  if (data === null) throw new ApiError(response.status, "The server's answer was not JSON.");
  return data;
}

function explain(status, data) {
  const detail = data && typeof data.error === "string" ? data.error : "no details";
  if (status === 401) return `A valid API key is needed (HTTP 401): ${detail}.`;
  if (status === 429) return `Too many requests (HTTP 429): ${detail}.`;
  if (status === 413) return `Too long (HTTP 413): ${detail}. Shorten the text and try again.`;
  if (status === 400 || status === 422) return `Not accepted (HTTP ${status}): ${detail}.`;
  if (status === 404) return `Not available (HTTP 404): ${detail}.`;
  if (status >= 500) return `The server failed (HTTP ${status}): ${detail}. Its log says more.`;
  return `The server answered HTTP ${status}: ${detail}.`;
}

// --- models, input, output ----------------------------------------------------------------

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function count(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${Math.round(n / 1e3)}k`;
  return String(n);
}

function describeModel(model) {
  const parts = [model.preset, `${count(model.parameters)} parameters`];
  const lang = model.languages;
  if (lang && lang.source && lang.target) parts.push(`${lang.source} \u2192 ${lang.target}`);
  if (model.labels) parts.push(model.labels.join(" / "));
  parts.push(model.device);
  return parts.join(" \u00b7 ");
}

async function loadModels() {
  try {
    const health = await api("/health");
    state.models = health.models;
    state.limits = health.limits;
  } catch (e) {
    $("models-empty").textContent = e.message;
    if (e.status === 401) askForKey();
    return;
  }
  const tasks = Object.keys(state.models);
  $("models-empty").remove();
  for (const task of tasks) {
    const input = el("input", { type: "radio", name: "model", value: task });
    input.addEventListener("change", () => choose(task));
    const text = el("div", {}, [
      el("b", { textContent: task }),
      el("span", { textContent: describeModel(state.models[task]) }),
    ]);
    $("models").append(el("label", { className: "model" }, [input, text]));
  }
  for (const button of document.querySelectorAll(".actions button")) {
    const loaded = button.dataset.task in state.models;
    button.disabled = !loaded;
    button.title = loaded ? "" : `No ${button.dataset.task} model is loaded`;
    button.addEventListener("click", () => submit(button.dataset.task));
  }
  $("file").hidden = !("translate" in state.models);
  if (tasks.length) choose(tasks[0]);
  else showError("No model is loaded: start attn serve with -m DIR.");
  updateCount();
}

// Show the key field; a key given there is kept and the models are asked for again.
function askForKey() {
  $("key-form").hidden = false;
  $("key").value = "";
  $("key").focus();
}

function wireKey() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    setApiKey(key);
    $("key-form").hidden = true;
    showError("");
    if (!Object.keys(state.models).length) loadModels();
  });
}

function choose(task) {
  state.task = task;
  for (const input of document.querySelectorAll("#models input")) {
    input.checked = input.value === task;
  }
  for (const button of document.querySelectorAll(".actions button")) {
    button.classList.toggle("primary", button.dataset.task === task);
  }
  const lang = state.models[task].languages;
  $("text").lang = (lang && lang.source) || "";
}

function updateCount() {
  const limit = state.limits && state.limits.max_chars;
  const n = $("text").value.length;
  $("count").textContent = limit ? `${n} / ${limit} characters.` : "";
  $("count").classList.toggle("over", Boolean(limit) && n > limit);
}

function showError(message) {
  $("error").textContent = message;
}

let busyTimer = 0;

// While a request runs: the buttons refuse (they stay focusable), and the status says what
// is under way and for how long.
function setBusy(task, busy) {
  state.busy = busy;
  document.body.setAttribute("aria-busy", String(busy));
  for (const button of document.querySelectorAll(".actions button")) {
    button.setAttribute("aria-disabled", String(busy));
  }
  clearInterval(busyTimer);
  $("status").replaceChildren();
  if (!busy) return;
  const words = $("text").value.trim().split(/\s+/).length;
  setStatus(`${DOING[task]} ${words} word${words === 1 ? "" : "s"}`);
  const started = Date.now();
  busyTimer = setInterval(() => {
    const seconds = Math.round((Date.now() - started) / 1000);
    $("status").dataset.seconds = String(seconds);
    $("status-time").textContent = ` (${seconds} s)`;
  }, 1000);
}

function setStatus(what) {
  $("status").replaceChildren(
    el("progress", { max: 1 }),
    el("span", { textContent: `${what}\u2026` }),
    el("span", { id: "status-time" }),
  );
}

async function submit(task) {
  if (state.busy || !(task in state.models)) return;
  const text = $("text").value;
  choose(task);
  showError("");
  if (!text.trim()) {
    showError("Type a text first.");
    $("text").focus();
    return;
  }
  const started = performance.now();
  $("result").hidden = true;
  $("explorer").hidden = true;
  $("explorer").dataset.state = "waiting";
  setBusy(task, true);
  try {
    if (task === "sentiment") {
      showSentiment(await api("/sentiment", { text, probs: true }));
      return;
    }
    // Asked at once: the model's worker runs them one after the other, without a round trip.
    const attention = api("/attention", { text, task, heads: true, digits: 4 });
    attention.catch(() => {}); // its error, if any, is reported when awaited below
    const result = await api(`/${task}`, { text });
    showOutput(task, result.output);
    setStatus("Reading the attention weights");
    showExplorer(await attention, result.output, started);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    showError(e.message);
    if (e.status === 401) askForKey();
  } finally {
    setBusy(task, false);
  }
}

function showOutput(task, output) {
  const lang = state.models[task].languages;
  $("output").lang = (lang && lang.target) || "";
  $("output").textContent = output;
  $("sentiment").replaceChildren();
  $("result").hidden = false;
}

function showSentiment(result) {
  $("output").textContent = "";
  const percent = (p) => `${(100 * p).toFixed(1)}%`;
  const rows = Object.entries(result.probs).sort((a, b) => b[1] - a[1]);
  $("sentiment").replaceChildren(
    el("p", { className: "label-big", textContent: result.label }),
    ...rows.map(([label, p]) => {
      const fill = el("div", { className: "fill" });
      fill.style.width = percent(p);
      const track = el("div", { className: "track" }, [fill]);
      track.setAttribute("role", "img");
      track.setAttribute("aria-label", `${label}: ${percent(p)}`);
      return el("div", { className: `prob${label === result.label ? " top" : ""}` }, [
        el("b", { textContent: label }),
        track,
        el("span", { className: "value", textContent: percent(p) }),
      ]);
    }),
  );
  $("result").hidden = false;
}

// --- a whole file --------------------------------------------------------------------------

// Read the dropped or chosen file, send it to /translate/file, follow its progress lines and
// offer the translated file for download.
async function translateFile(file) {
  if (state.fileBusy || !("translate" in state.models)) return;
  $("file-error").textContent = "";
  $("file-done").hidden = true;
  let content;
  try {
    content = new TextDecoder("utf-8", { fatal: true }).decode(await file.arrayBuffer());
  } catch (e) {
    $("file-error").textContent = `${file.name} is not a text file (UTF-8): it cannot be translated.`;
    return;
  }
  const body = JSON.stringify({ filename: file.name, content });
  const limit = state.limits && state.limits.max_body_bytes;
  if (limit && new Blob([body]).size > limit) {
    $("file-error").textContent = `${file.name} is too long: this server takes at most ` +
      `${count(limit)}B per request (attn serve --max-body-bytes).`;
    return;
  }
  setFileBusy(file.name, true);
  try {
    const done = await followFile(await send("/translate/file", body), file.name);
    offerFile(done, file.name);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    $("file-error").textContent = e.message;
    if (e.status === 401) askForKey();
  } finally {
    setFileBusy(file.name, false);
  }
}

// The answer's JSON lines as they arrive: progress shown, the last ("done") returned.
async function followFile(response, name) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const event = JSON.parse(buffer.slice(0, end));
      buffer = buffer.slice(end + 1);
      if (event.event === "error") throw new ApiError(500, `The server failed: ${event.error}.`);
      if (event.event === "done") return event;
      showFileProgress(name, event.done || 0, event.parts);
    }
    if (done) throw new ApiError(0, "The server stopped before the file was translated.");
  }
}

let fileTimer = 0;

function setFileBusy(name, busy) {
  state.fileBusy = busy;
  $("file").setAttribute("aria-busy", String(busy));
  $("file-input").disabled = busy;
  clearInterval(fileTimer);
  if (!busy) return;
  state.fileStarted = Date.now();
  showFileProgress(name, 0, null);
  fileTimer = setInterval(() => {
    const time = $("file-time");
    if (time) time.textContent = `(${Math.round((Date.now() - state.fileStarted) / 1000)} s)`;
  }, 1000);
}

function showFileProgress(name, done, parts) {
  const bar = el("progress", { id: "file-progress" });
  let what = `Reading ${name}`;
  if (parts !== null && parts !== undefined) {
    Object.assign(bar, { max: Math.max(parts, 1), value: done });
    what = `Translating ${name}: ${done.toLocaleString("en")} of ${parts.toLocaleString("en")} parts`;
  }
  const seconds = Math.round((Date.now() - state.fileStarted) / 1000);
  $("file-status").replaceChildren(
    bar, el("span", { textContent: `${what}\u2026` }),
    el("span", { id: "file-time", textContent: seconds ? `(${seconds} s)` : "" }),
  );
}

function offerFile(done, name) {
  const seconds = ((Date.now() - state.fileStarted) / 1000).toFixed(1);
  if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
  state.fileUrl = URL.createObjectURL(new Blob([done.content], { type: "text/plain" }));
  const link = $("download");
  Object.assign(link, { href: state.fileUrl, download: done.filename });
  link.textContent = `Download ${done.filename}`;
  $("file-summary").textContent = `${name} translated in ${seconds} s (${done.format}).`;
  const lang = state.models.translate.languages;
  $("file-preview").lang = (lang && lang.target) || "";
  $("file-preview").textContent = done.content.split("\n").slice(0, 40).join("\n");
  $("file-status").replaceChildren();
  $("file-done").hidden = false;
}

function wireFile() {
  const zone = $("drop");
  $("file-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = ""; // choosing the same file again translates it again
    if (file) translateFile(file);
  });
  // A file dropped anywhere else must not replace the page with itself.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => event.preventDefault());
  }
  zone.addEventListener("dragover", () => zone.classList.add("over"));
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    zone.classList.remove("over");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) translateFile(file);
  });
}

// --- the explorer: data -------------------------------------------------------------------

const mapKey = (kind, layer, head) => `${kind}/${layer}/${head}`;

// The maps by kind, layer and head, plus each layer's mean over heads.
function indexMaps(data) {
  const maps = new Map();
  const layers = {};
  let heads = 0;
  for (const m of data.maps) {
    maps.set(mapKey(m.kind, m.layer, m.head), m);
    layers[m.kind] = Math.max(layers[m.kind] || 0, m.layer + 1);
    heads = Math.max(heads, m.head + 1);
  }
  for (const [kind, n] of Object.entries(layers)) {
    for (let layer = 0; layer < n; layer++) {
      const all = [];
      for (let h = 0; h < heads; h++) all.push(maps.get(mapKey(kind, layer, h)).matrix);
      const matrix = all[0].map((row, i) =>
        row.map((_, j) => all.reduce((sum, m) => sum + m[i][j], 0) / heads));
      const first = maps.get(mapKey(kind, layer, 0));
      maps.set(mapKey(kind, layer, "mean"), { ...first, head: "mean", matrix });
    }
  }
  return { data, maps, layers, heads };
}

function currentMap() {
  const { kind, layer, head } = state.view;
  const map = state.explorer.maps.get(mapKey(kind, layer, head));
  const data = state.explorer.data;
  return { ...map, rowTokens: data[TOKENS[map.rows]], colTokens: data[TOKENS[map.columns]] };
}

const special = (piece) => /^<.*>$/.test(piece);
const short = (piece) => (piece.length > 14 ? `${piece.slice(0, 13)}\u2026` : piece);
const masked = (map, r, c) => map.kind === "decoder" && c > r;

// A weight in [0, 1] on the Blues scale, interpolated between its nine colours.
function color(w) {
  const x = Math.min(Math.max(w, 0), 1) * (BLUES.length - 1);
  const i = Math.min(Math.floor(x), BLUES.length - 2);
  const t = x - i;
  const mix = (k) => {
    const a = parseInt(BLUES[i].slice(k, k + 2), 16);
    const b = parseInt(BLUES[i + 1].slice(k, k + 2), 16);
    return Math.round(a * (1 - t) + b * t);
  };
  return `rgb(${mix(1)}, ${mix(3)}, ${mix(5)})`;
}

// --- the explorer: controls ---------------------------------------------------------------

function showExplorer(data, shownOutput, started) {
  state.explorer = indexMaps(data);
  state.cursor = { r: 0, c: 0 };
  const kinds = Object.keys(KINDS).filter((k) => k in state.explorer.layers);
  if (!kinds.includes(state.view.kind)) state.view.kind = kinds[0];
  const box = $("kinds");
  box.querySelectorAll("label").forEach((node) => node.remove());
  for (const kind of kinds) {
    const input = el("input", {
      type: "radio", name: "kind", value: kind, checked: kind === state.view.kind,
    });
    input.addEventListener("change", () => setView({ kind }));
    const text = el("span", { textContent: KINDS[kind].short });
    box.append(el("label", { title: KINDS[kind].name }, [input, text]));
  }
  const notes = [];
  if (data.output !== shownOutput) {
    notes.push(`The maps follow greedy decoding, whose output is \u201c${data.output}\u201d.`);
  }
  if (data.truncated) notes.push("The text is longer than the model reads: its end is cut.");
  notes.push("Hover, tap or focus a piece, a label or a cell; click or tap to pin it.");
  $("explorer-note").textContent = notes.join(" ");
  $("explorer").hidden = false;
  setView({});
  drawAlignment();
  // Marked ready after the next frame is painted: what a person sees is there.
  requestAnimationFrame(() => setTimeout(() => {
    $("explorer").dataset.renderMs = String(Math.round(performance.now() - started));
    $("explorer").dataset.state = "ready";
  }, 0));
}

function setView(change) {
  Object.assign(state.view, change);
  const { layers, heads } = state.explorer;
  const n = layers[state.view.kind];
  state.view.layer = Math.min(state.view.layer, n - 1);
  const name = (i) => (i === 0 ? "0 (first)" : i === n - 1 ? `${i} (last)` : String(i));
  const layerOptions = Array.from({ length: n }, (_, i) => [String(i), name(i)]);
  fillSelect($("layer"), layerOptions, String(state.view.layer));
  const headOptions = Array.from({ length: heads }, (_, i) => [String(i), `head ${i}`]);
  fillSelect($("head"), [["mean", "mean over heads"], ...headOptions], String(state.view.head));
  state.focus = state.pinned = null;
  render();
}

function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, text]) =>
    el("option", { value: v, textContent: text, selected: v === value })));
}

// --- the explorer: drawing ----------------------------------------------------------------

let measureContext = null;
function textWidth(text, font) {
  measureContext = measureContext || document.createElement("canvas").getContext("2d");
  measureContext.font = font;
  return measureContext.measureText(text).width;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function render() {
  const map = currentMap();
  const kind = KINDS[map.kind];
  const head = map.head === "mean" ? "mean over heads" : `head ${map.head}`;
  $("rows-title").textContent = kind.rows;
  $("cols-title").textContent = kind.cols;
  $("map-title").textContent = `${kind.name}, layer ${map.layer}, ${head}: ${kind.what}.`;
  drawStrip($("row-tokens"), map.rowTokens, "r");
  drawStrip($("col-tokens"), map.colTokens, "c");
  drawHeatmap(map, `${kind.name}, layer ${map.layer}, ${head}`);
  drawLegend(map.kind === "decoder");
  highlight();
}

// The pieces as text: a word's first piece gets the space before it; each is a button.
function drawStrip(strip, pieces, axis) {
  strip.replaceChildren(...pieces.map((piece, i) => {
    const word = piece.startsWith(WORD);
    const tok = el("button", {
      type: "button",
      className: `tok${word && i > 0 ? " word" : ""}${special(piece) ? " special" : ""}`,
      textContent: (word ? piece.slice(1) : piece) || WORD,
      tabIndex: i === 0 ? 0 : -1, // one tab stop per strip; arrow keys move within it
    });
    tok.dataset[axis] = String(i);
    tok.dataset.piece = piece;
    return tok;
  }));
}

// The map as an SVG grid: one rect per weight (data-r, data-c, data-w), labels on both axes,
// the masked (future) cells of the decoder hatched, and three outlines for the focus.
function drawHeatmap(map, title) {
  const heatmap = $("heatmap");
  const rows = map.rowTokens.length, cols = map.colTokens.length;
  const font = "11px system-ui, sans-serif";
  const widest = (pieces) => Math.max(...pieces.map((p) => textWidth(short(p), font)));
  const left = Math.ceil(widest(map.rowTokens)) + 10;
  const top = Math.ceil(widest(map.colTokens)) + 10;
  // The figure's width, not the scroll box's: the box fits the map drawn last.
  const room = $("heatmap-wrap").parentNode.clientWidth - 12 - left;
  // Cells shrink to fit the width down to 13 px; past that the map scrolls sideways.
  const cell = Math.max(13, Math.min(32, Math.floor(room / cols)));
  const width = left + cols * cell + 2, height = top + rows * cell + 2;
  Object.entries({ width, height, viewBox: `0 0 ${width} ${height}` })
    .forEach(([k, v]) => heatmap.setAttribute(k, v));
  const axes = `${rows} rows (${KINDS[map.kind].rows.toLowerCase()}) by ${cols} columns`;
  heatmap.setAttribute("aria-label", `${title}: ${axes}. Arrow keys move over the cells.`);
  Object.assign(heatmap.dataset, {
    kind: map.kind, layer: map.layer, head: map.head, rows, cols, cell, left, top,
  });

  const hatch = svg("pattern", {
    id: "masked", width: 6, height: 6, patternUnits: "userSpaceOnUse",
    patternTransform: "rotate(45)",
  });
  hatch.append(
    svg("rect", { width: 6, height: 6, fill: "#fff" }),
    svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: GRID, "stroke-width": 2 }),
  );
  const defs = svg("defs");
  defs.append(hatch);
  const parts = [defs];
  map.rowTokens.forEach((piece, r) => parts.push(svg("text", {
    x: left - 6, y: top + r * cell + cell / 2, "text-anchor": "end",
    "dominant-baseline": "central", "data-r": r,
  }, short(piece))));
  map.colTokens.forEach((piece, c) => parts.push(svg("text", {
    transform: `translate(${left + c * cell + cell / 2},${top - 6}) rotate(-90)`,
    "dominant-baseline": "central", "data-c": c,
  }, short(piece))));
  const cells = svg("g");
  map.matrix.forEach((row, r) => row.forEach((w, c) => {
    const attrs = {
      x: left + c * cell, y: top + r * cell, width: cell, height: cell,
      "data-r": r, "data-c": c, "data-w": w, fill: color(w),
    };
    if (masked(map, r, c)) Object.assign(attrs, { fill: "url(#masked)", class: "masked" });
    cells.append(svg("rect", attrs));
  }));
  parts.push(cells, svg("rect", {
    x: left, y: top, width: cols * cell, height: rows * cell, fill: "none", stroke: GRID,
  }));
  for (const [id, kind] of [["row-hi", "hi"], ["col-hi", "hi"], ["cell-hi", "cursor"]]) {
    parts.push(svg("rect", { id, class: kind, visibility: "hidden" }));
  }
  heatmap.replaceChildren(...parts);
}

function drawLegend(withMask) {
  const gradient = svg("linearGradient", { id: "scale" });
  gradient.append(...BLUES.map((c, i) =>
    svg("stop", { offset: `${(100 * i) / (BLUES.length - 1)}%`, "stop-color": c })));
  const defs = svg("defs");
  defs.append(gradient);
  const scale = svg("svg", {
    width: 172, height: 28, role: "img",
    "aria-label": "Colour scale: weight 0 (white) to 1 (dark blue)",
  });
  scale.append(defs, svg("rect", {
    x: 6, y: 2, width: 160, height: 10, fill: "url(#scale)", stroke: GRID,
  }));
  for (const [v, anchor] of [[0, "start"], [0.5, "middle"], [1, "end"]]) {
    scale.append(svg("text", {
      x: 6 + 160 * v, y: 25, "text-anchor": anchor, "font-size": 11, fill: "#57606a",
    }, String(v)));
  }
  const items = [el("span", { textContent: "Weight" }), scale];
  if (withMask) {
    const swatch = svg("svg", { width: 14, height: 14, "aria-hidden": "true" });
    swatch.append(svg("rect", { width: 14, height: 14, fill: "url(#masked)", stroke: GRID }));
    items.push(el("span", { className: "key" }, [swatch, "masked: a later piece, never seen"]));
  }
  items.push(el("span", { textContent: "Each row sums to 1." }));
  $("legend").replaceChildren(...items);
}

// --- the explorer: hover, tap and keys ----------------------------------------------------

// Show the focus: outline its row, column or cell, and light up the other side's pieces in
// proportion to their weight (a row's columns, or a column's rows).
function highlight() {
  const map = currentMap();
  const focus = state.focus || state.pinned || {};
  const { r, c } = focus;
  const heatmap = $("heatmap");
  const { cell, left, top } = Object.fromEntries(
    ["cell", "left", "top"].map((k) => [k, Number(heatmap.dataset[k])]));
  const rows = map.rowTokens.length, cols = map.colTokens.length;
  const outline = (id, on, x, y, width, height) => {
    const rect = $(id);
    rect.setAttribute("visibility", on ? "visible" : "hidden");
    if (on) Object.entries({ x, y, width, height }).forEach(([k, v]) => rect.setAttribute(k, v));
  };
  const hasR = r !== undefined, hasC = c !== undefined;
  outline("row-hi", hasR, left, top + r * cell, cols * cell, cell);
  outline("col-hi", hasC && !hasR, left + c * cell, top, cell, rows * cell);
  outline("cell-hi", hasR && hasC, left + c * cell, top + r * cell, cell, cell);
  heatmap.dataset.focusRow = hasR ? String(r) : "";
  heatmap.dataset.focusCol = hasC ? String(c) : "";
  for (const t of heatmap.querySelectorAll("text")) {
    const on = (hasR && t.dataset.r === String(r)) || (hasC && t.dataset.c === String(c));
    t.classList.toggle("on", on);
  }

  let weights = null, lit = null;
  if (hasR) [weights, lit] = [map.matrix[r], $("col-tokens")];
  else if (hasC) [weights, lit] = [map.matrix.map((row) => row[c]), $("row-tokens")];
  const best = weights ? weights.indexOf(Math.max(...weights)) : -1;
  for (const [strip, axis, own] of [[$("row-tokens"), "r", r], [$("col-tokens"), "c", c]]) {
    for (const tok of strip.children) {
      const i = Number(tok.dataset[axis]);
      tok.classList.toggle("active", i === own);
      const w = strip === lit ? weights[i] : null;
      if (w === null) {
        delete tok.dataset.weight;
        tok.style.background = "";
        tok.title = "";
      } else {
        tok.dataset.weight = String(w);
        tok.style.background = color(w);
        tok.title = w.toFixed(3);
      }
      tok.classList.toggle("dark", w !== null && w > 0.5);
      tok.classList.toggle("top", w !== null && i === best);
    }
  }
  $("readout").textContent = describeFocus(map, r, c);
}

function describeFocus(map, r, c) {
  if (r === undefined && c === undefined) return "";
  if (r !== undefined && c !== undefined) {
    const w = masked(map, r, c) ? "masked (a later piece)" : map.matrix[r][c].toFixed(3);
    return `${map.rowTokens[r]} \u2192 ${map.colTokens[c]}: ${w}`;
  }
  const weights = r !== undefined ? map.matrix[r] : map.matrix.map((row) => row[c]);
  const names = r !== undefined ? map.colTokens : map.rowTokens;
  const top = weights.map((w, i) => [w, i]).sort((a, b) => b[0] - a[0]).slice(0, 4);
  const list = top.map(([w, i]) => `${names[i]} ${(100 * w).toFixed(1)}%`).join(", ");
  return r !== undefined
    ? `${map.rowTokens[r]} attends to ${list}`
    : `${map.colTokens[c]} is attended by ${list}`;
}

// What a node stands for: a piece its row or column, a heatmap cell both, a label its line.
function focusFrom(node) {
  const d = node && node.dataset;
  if (!d) return null;
  const tok = node.classList.contains("tok");
  if (tok && d.r !== undefined) return { r: Number(d.r) };
  if (tok && d.c !== undefined) return { c: Number(d.c) };
  const focus = {};
  if (d.r !== undefined) focus.r = Number(d.r);
  if (d.c !== undefined) focus.c = Number(d.c);
  return "r" in focus || "c" in focus ? focus : null;
}

function setFocus(focus) {
  state.focus = focus;
  highlight();
}

// Arrow keys move the focus along `items`, which hold one tab stop between them.
function rove(event, items) {
  const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[event.key];
  if (!step) return;
  const list = [...items];
  const next = list[list.indexOf(document.activeElement) + step];
  if (next) {
    for (const item of list) item.setAttribute("tabindex", item === next ? "0" : "-1");
    next.focus();
  }
  event.preventDefault();
}

function showTooltip(event) {
  const tip = $("tooltip");
  tip.textContent = $("readout").textContent;
  tip.hidden = !tip.textContent;
  const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  tip.style.left = `${Math.max(4, x)}px`;
  tip.style.top = `${event.clientY + 18}px`;
}

function wireExplorer() {
  for (const target of [$("heatmap"), $("row-tokens"), $("col-tokens")]) {
    target.addEventListener("pointerover", (event) => {
      const focus = focusFrom(event.target);
      if (focus) setFocus(focus);
    });
    target.addEventListener("pointermove", (event) => {
      if (event.pointerType === "mouse") showTooltip(event);
    });
    target.addEventListener("pointerleave", () => {
      $("tooltip").hidden = true;
      setFocus(null);
    });
    target.addEventListener("click", (event) => {
      const focus = focusFrom(event.target);
      if (!focus) return;
      const same = state.pinned && state.pinned.r === focus.r && state.pinned.c === focus.c;
      state.pinned = same ? null : focus;
      setFocus(same ? null : focus);
    });
  }
  for (const strip of [$("row-tokens"), $("col-tokens")]) {
    strip.addEventListener("focusin", (event) => setFocus(focusFrom(event.target)));
    strip.addEventListener("focusout", () => setFocus(null));
    strip.addEventListener("keydown", (event) => rove(event, strip.children));
  }
  const heatmap = $("heatmap");
  heatmap.addEventListener("focus", () => setFocus({ ...state.cursor }));
  heatmap.addEventListener("blur", () => setFocus(null));
  heatmap.addEventListener("keydown", (event) => {
    const move = {
      ArrowRight: [0, 1], ArrowLeft: [0, -1], ArrowDown: [1, 0], ArrowUp: [-1, 0],
    }[event.key];
    if (!move) return;
    const rows = Number(heatmap.dataset.rows), cols = Number(heatmap.dataset.cols);
    state.cursor = {
      r: Math.min(rows - 1, Math.max(0, state.cursor.r + move[0])),
      c: Math.min(cols - 1, Math.max(0, state.cursor.c + move[1])),
    };
    setFocus({ ...state.cursor });
    event.preventDefault();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && state.explorer) {
      state.pinned = null;
      setFocus(null);
    }
  });
  $("layer").addEventListener("change", (event) => setView({ layer: Number(event.target.value) }));
  $("head").addEventListener("change", (event) => {
    const v = event.target.value;
    setView({ head: v === "mean" ? "mean" : Number(v) });
  });
  let pending = 0;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => {
      if (state.explorer && !$("explorer").hidden) {
        render();
        drawAlignment();
      }
    }, 150);
  });
}

// --- the word alignment -------------------------------------------------------------------

// Whitespace words of a list of pieces: a piece starting with "▁" starts a word (as
// attention_maps.word_index counts them).
function words(pieces) {
  const out = [];
  pieces.forEach((piece, i) => {
    const text = piece.startsWith(WORD) ? piece.slice(1) : piece;
    if (i === 0 || piece.startsWith(WORD)) out.push(text);
    else out[out.length - 1] += text;
  });
  return out;
}

// Source words in a column on the left, output words on the right, a line per aligned pair.
function drawAlignment() {
  const data = state.explorer.data;
  const box = $("alignment");
  const source = words(data.source_tokens.slice(0, -1)); // EOS left out, as in `align`
  const output = words(data.output_tokens.slice(0, -1));
  const font = "13px system-ui, sans-serif", heading = "600 13px system-ui, sans-serif";
  const wide = (list, title) =>
    Math.max(textWidth(title, heading), ...list.map((w) => textWidth(w, font)));
  const room = box.parentNode.clientWidth || 300;
  const leftW = Math.ceil(Math.min(wide(source, "Source"), room * 0.4)) + 4;
  const rightW = Math.ceil(Math.min(wide(output, "Output"), room * 0.4)) + 4;
  const gap = Math.max(60, Math.min(140, room - leftW - rightW));
  const line = 22, top = 22;
  const width = leftW + gap + rightW;
  const height = top + Math.max(source.length, output.length) * line + 4;
  Object.entries({ width, height, viewBox: `0 0 ${width} ${height}` })
    .forEach(([k, v]) => box.setAttribute(k, v));
  const pairs = data.alignment.map(([s, t]) => `${source[s]} to ${output[t]}`).join(", ");
  box.setAttribute("aria-label", `Word alignment: ${pairs}`);
  const y = (i) => top + i * line + line / 2;
  const title = { y: 12, "font-weight": 600, fill: "#57606a" };
  const parts = [
    svg("text", { ...title, x: leftW, "text-anchor": "end" }, "Source"),
    svg("text", { ...title, x: leftW + gap }, "Output"),
  ];
  const word = (attrs, i, text) => svg("text", {
    ...attrs, y: y(i), "dominant-baseline": "central", tabindex: i === 0 ? 0 : -1,
  }, text);
  source.forEach((w, i) => parts.push(word({ x: leftW, "text-anchor": "end", "data-s": i }, i, w)));
  output.forEach((w, i) => parts.push(word({ x: leftW + gap, "data-t": i }, i, w)));
  for (const [s, t] of data.alignment) {
    parts.push(svg("line", {
      x1: leftW + 6, y1: y(s), x2: leftW + gap - 6, y2: y(t), "data-s": s, "data-t": t,
    }));
  }
  box.replaceChildren(...parts);
  box.dataset.pairs = data.alignment.map(([s, t]) => `${s}-${t}`).join(" ");
}

// Hover or focus a word: its lines and the words at their other ends light up.
function wireAlignment() {
  const box = $("alignment");
  const light = (node) => {
    const s = node && node.dataset ? node.dataset.s : undefined;
    const t = node && node.dataset ? node.dataset.t : undefined;
    box.classList.toggle("focus", s !== undefined || t !== undefined);
    const lines = [...box.querySelectorAll("line")];
    for (const l of lines) {
      l.classList.toggle("on", (s !== undefined && l.dataset.s === s) ||
        (t !== undefined && l.dataset.t === t));
    }
    const ends = lines.filter((l) => l.classList.contains("on"));
    for (const w of box.querySelectorAll("text[data-s], text[data-t]")) {
      const side = w.dataset.s !== undefined ? "s" : "t";
      const lit = ends.some((l) => l.dataset[side] === w.dataset[side]);
      w.classList.toggle("on", lit || w === node);
    }
  };
  box.addEventListener("pointerover", (event) => light(event.target));
  box.addEventListener("pointerleave", () => light(null));
  box.addEventListener("focusin", (event) => light(event.target));
  box.addEventListener("focusout", () => light(null));
  box.addEventListener("keydown", (event) => {
    const side = event.target.dataset.s !== undefined ? "s" : "t";
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      const other = box.querySelector(`text[data-${side === "s" ? "t" : "s"}]`);
      if (other) other.focus();
      event.preventDefault();
      return;
    }
    rove(event, box.querySelectorAll(`text[data-${side}]`));
  });
}

// --- start --------------------------------------------------------------------------------

function start() {
  const text = $("text");
  text.addEventListener("input", updateCount);
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      if (state.task) submit(state.task);
    }
  });
  wireExplorer();
  wireAlignment();
  wireKey();
  wireFile();
  loadModels();
}

start();
