// The page of `attn serve`: run the loaded models and explore their attention.
// Plain JavaScript and SVG, no dependencies; it talks only to this server's JSON API.
"use strict";

const DOING = { translate: "Translating", summarize: "Summarizing", sentiment: "Classifying" };
// Per map kind: its name, and what its rows and columns are (the axes of `attn attention`).
const KINDS = {
  cross: {
    short: "Cross-attention", name: "Cross-attention", rows: "Output", cols: "Source",
    what: "each output piece (row) over the source pieces (columns)",
  },
  encoder: {
    short: "Encoder self", name: "Encoder self-attention", rows: "Source (reading)", cols: "Source (read)",
    what: "each source piece (row) over the source pieces (columns)",
  },
  decoder: {
    short: "Decoder self", name: "Decoder masked self-attention", rows: "Output", cols: "Read so far",
    what: "each output step (row) over the pieces it has read (columns); later pieces are masked",
  },
};
const TOKENS = { source: "source_tokens", target: "target_tokens", output: "output_tokens" };
// ColorBrewer "Blues": a single-hue sequential scale that reads the same to colour-blind eyes.
const BLUES = ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6",
  "#4292c6", "#2171b5", "#08519c", "#08306b"];
const WORD = "\u2581";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

const state = {
  models: {}, // task -> what /health says of its model
  limits: null,
  task: null, // the chosen model's task
  busy: false,
  explorer: null, // { data, maps: Map(key -> map), heads, layers: {kind: n} }
  view: { kind: "cross", layer: 0, head: "mean" },
  focus: null, // { r, c }: the hovered (or focused) row, column or cell
  pinned: null, // the focus a click or tap fixed
  cursor: { r: 0, c: 0 }, // the heatmap's keyboard cell
};

// --- the API ------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "The server could not be reached. Is attn serve still running?");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (e) {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, explain(response.status, data));
  if (data === null) throw new ApiError(response.status, "The server's answer was not JSON.");
  return data;
}

function explain(status, data) {
  const detail = data && typeof data.error === "string" ? data.error : "no details";
  if (status === 413) return `Too long (HTTP 413): ${detail}. Shorten the text and try again.`;
  if (status === 400 || status === 422) return `Not accepted (HTTP ${status}): ${detail}.`;
  if (status === 404) return `Not available (HTTP 404): ${detail}.`;
  if (status >= 500) return `The server failed (HTTP ${status}): ${detail}. Its log says more.`;
  return `The server answered HTTP ${status}: ${detail}.`;
}

// --- models, input, output ------------------------------------------------------------

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
  const box = $("models");
  try {
    const health = await api("/health");
    state.models = health.models;
    state.limits = health.limits;
  } catch (e) {
    $("models-empty").textContent = e.message;
    return;
  }
  const tasks = Object.keys(state.models);
  $("models-empty").remove();
  for (const task of tasks) {
    const input = el("input", { type: "radio", name: "model", value: task });
    input.addEventListener("change", () => choose(task));
    box.append(el("label", { className: "model" }, [
      input,
      el("div", {}, [el("b", { textContent: task }), el("span", { textContent: describeModel(state.models[task]) })]),
    ]));
  }
  for (const button of document.querySelectorAll(".actions button")) {
    const loaded = button.dataset.task in state.models;
    button.disabled = !loaded;
    button.title = loaded ? "" : `No ${button.dataset.task} model is loaded`;
    button.addEventListener("click", () => submit(button.dataset.task));
  }
  if (tasks.length) choose(tasks[0]);
  else showError("No model is loaded: start attn serve with -m DIR.");
  updateCount();
}

function choose(task) {
  state.task = task;
  for (const input of document.querySelectorAll("#models input")) input.checked = input.value === task;
  for (const button of document.querySelectorAll(".actions button")) {
    button.classList.toggle("primary", button.dataset.task === task);
  }
  const lang = state.models[task].languages;
  $("text").lang = (lang && lang.source) || "";
}

function updateCount() {
  const limit = state.limits && state.limits.max_chars;
  const n = $("text").value.length;
  const counter = $("count");
  counter.textContent = limit ? `${n} / ${limit} characters.` : "";
  counter.classList.toggle("over", Boolean(limit) && n > limit);
}

function showError(message) {
  $("error").textContent = message;
}

function setBusy(task, busy) {
  state.busy = busy;
  document.body.setAttribute("aria-busy", String(busy));
  for (const button of document.querySelectorAll(".actions button")) {
    button.disabled = busy || !(button.dataset.task in state.models);
  }
  const status = $("status");
  status.replaceChildren();
  if (busy) {
    const words = $("text").value.trim().split(/\s+/).length;
    status.append(
      el("progress", { max: 1 }),
      el("span", { textContent: `${DOING[task]} ${words} word${words === 1 ? "" : "s"}\u2026` }),
    );
  }
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
    showExplorer(await attention, result.output, started);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    showError(e.message);
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
  const rows = Object.entries(result.probs).sort((a, b) => b[1] - a[1]);
  $("sentiment").replaceChildren(
    el("p", { className: "label-big", textContent: result.label }),
    ...rows.map(([label, p]) => {
      const fill = el("div", { className: "fill" });
      fill.style.width = `${(100 * p).toFixed(1)}%`;
      const track = el("div", { className: "track" }, [fill]);
      track.setAttribute("role", "img");
      track.setAttribute("aria-label", `${label}: ${(100 * p).toFixed(1)} percent`);
      return el("div", { className: `prob${label === result.label ? " top" : ""}` }, [
        el("b", { textContent: label }),
        track,
        el("span", { className: "value", textContent: `${(100 * p).toFixed(1)}%` }),
      ]);
    }),
  );
  $("result").hidden = false;
}

// --- the explorer: data ---------------------------------------------------------------

const mapKey = (kind, layer, head) => `${kind}/${layer}/${head}`;

// The maps by kind, layer and head, plus the mean over heads of each layer.
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
      const matrix = all[0].map((row, i) => row.map((_, j) => all.reduce((s, m) => s + m[i][j], 0) / heads));
      maps.set(mapKey(kind, layer, "mean"), { ...maps.get(mapKey(kind, layer, 0)), head: "mean", matrix });
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

function color(w) {
  const x = Math.min(Math.max(w, 0), 1) * (BLUES.length - 1);
  const i = Math.min(Math.floor(x), BLUES.length - 2);
  const t = x - i;
  const a = BLUES[i], b = BLUES[i + 1];
  const channel = (k) => Math.round(parseInt(a.slice(k, k + 2), 16) * (1 - t) + parseInt(b.slice(k, k + 2), 16) * t);
  return `rgb(${channel(1)}, ${channel(3)}, ${channel(5)})`;
}

// --- the explorer: controls -------------------------------------------------------------

function showExplorer(data, shownOutput, started) {
  state.explorer = indexMaps(data);
  state.focus = state.pinned = null;
  state.cursor = { r: 0, c: 0 };
  const kinds = Object.keys(KINDS).filter((k) => k in state.explorer.layers);
  if (!kinds.includes(state.view.kind)) state.view.kind = kinds[0];
  const box = $("kinds");
  box.querySelectorAll("label").forEach((node) => node.remove());
  for (const kind of kinds) {
    const input = el("input", { type: "radio", name: "kind", value: kind, checked: kind === state.view.kind });
    input.addEventListener("change", () => setView({ kind }));
    box.append(el("label", { title: KINDS[kind].name }, [input, el("span", { textContent: KINDS[kind].short })]));
  }
  const notes = [];
  if (data.output !== shownOutput) {
    notes.push(`The maps follow greedy decoding, whose output is \u201c${data.output}\u201d.`);
  }
  if (data.truncated) notes.push("The text is longer than the model reads; only its beginning is shown.");
  notes.push("Hover, tap or focus a piece, a label or a cell; click or tap to pin it.");
  $("explorer-note").textContent = notes.join(" ");
  $("explorer").hidden = false;
  setView({});
  drawAlignment();
  const explorer = $("explorer");
  explorer.dataset.state = "ready";
  explorer.dataset.renderMs = String(Math.round(performance.now() - started));
}

function setView(change) {
  Object.assign(state.view, change);
  const n = state.explorer.layers[state.view.kind];
  state.view.layer = Math.min(state.view.layer, n - 1);
  fillSelect($("layer"), Array.from({ length: n }, (_, i) => [String(i), i === 0 ? "0 (first)" : i === n - 1 ? `${i} (last)` : String(i)]), String(state.view.layer));
  const heads = [["mean", "mean over heads"], ...Array.from({ length: state.explorer.heads }, (_, i) => [String(i), `head ${i}`])];
  fillSelect($("head"), heads, String(state.view.head));
  state.focus = state.pinned = null;
  render();
}

function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, text]) => el("option", { value: v, textContent: text, selected: v === value })));
}

// --- the explorer: drawing --------------------------------------------------------------

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

const short = (piece) => (piece.length > 14 ? `${piece.slice(0, 13)}\u2026` : piece);

function render() {
  const map = currentMap();
  const kind = KINDS[map.kind];
  $("rows-title").textContent = kind.rows;
  $("cols-title").textContent = kind.cols;
  drawStrip($("row-tokens"), map.rowTokens, "r");
  drawStrip($("col-tokens"), map.colTokens, "c");
  const head = map.head === "mean" ? "mean over heads" : `head ${map.head}`;
  $("map-title").textContent = `${kind.name}, layer ${map.layer}, ${head}: ${kind.what}.`;
  drawHeatmap(map);
  drawLegend(map.kind === "decoder");
  highlight();
}

function drawStrip(strip, pieces, axis) {
  strip.replaceChildren(...pieces.map((piece, i) => {
    const word = piece.startsWith(WORD);
    const text = word ? piece.slice(1) : piece;
    const tok = el("button", {
      type: "button",
      className: `tok${word && i > 0 ? " word" : ""}${special(piece) ? " special" : ""}`,
      textContent: text || WORD,
    });
    tok.dataset[axis] = String(i);
    tok.dataset.piece = piece;
    tok.tabIndex = i === 0 ? 0 : -1; // one tab stop per strip; arrow keys move within it
    return tok;
  }));
}

function drawHeatmap(map) {
  const heatmap = $("heatmap");
  const rows = map.rowTokens.length, cols = map.colTokens.length;
  const font = "12px system-ui, sans-serif";
  const rowLabel = Math.ceil(Math.max(...map.rowTokens.map((p) => textWidth(short(p), font)))) + 10;
  const colLabel = Math.ceil(Math.max(...map.colTokens.map((p) => textWidth(short(p), font)))) + 10;
  const room = $("heatmap-wrap").clientWidth - 10 - rowLabel;
  const cell = Math.max(16, Math.min(32, Math.floor(room / cols)));
  const width = rowLabel + cols * cell + 2, height = colLabel + rows * cell + 2;
  heatmap.setAttribute("width", width);
  heatmap.setAttribute("height", height);
  heatmap.setAttribute("viewBox", `0 0 ${width} ${height}`);
  heatmap.setAttribute("aria-label", `${KINDS[map.kind].name}, layer ${map.layer}, ${map.head === "mean" ? "mean over heads" : `head ${map.head}`}: ${rows} rows (${KINDS[map.kind].rows.toLowerCase()}) by ${cols} columns (${KINDS[map.kind].cols.toLowerCase()}). Arrow keys move over the cells.`);
  heatmap.dataset.kind = map.kind;
  heatmap.dataset.layer = String(map.layer);
  heatmap.dataset.head = String(map.head);
  heatmap.dataset.rows = String(rows);
  heatmap.dataset.cols = String(cols);

  const defs = svg("defs");
  const hatch = svg("pattern", { id: "masked", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  hatch.append(svg("rect", { width: 6, height: 6, fill: "#fff" }), svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#d0d7de", "stroke-width": 2 }));
  defs.append(hatch);
  const parts = [defs];
  map.rowTokens.forEach((piece, r) => {
    const t = svg("text", { x: rowLabel - 6, y: colLabel + r * cell + cell / 2, "text-anchor": "end", "dominant-baseline": "central", "data-r": r }, short(piece));
    parts.push(t);
  });
  map.colTokens.forEach((piece, c) => {
    const x = rowLabel + c * cell + cell / 2;
    const t = svg("text", { transform: `translate(${x},${colLabel - 6}) rotate(-90)`, "dominant-baseline": "central", "data-c": c }, short(piece));
    parts.push(t);
  });
  const cells = svg("g", { class: "cells" });
  map.matrix.forEach((row, r) => {
    row.forEach((w, c) => {
      const masked = map.kind === "decoder" && c > r;
      const attrs = { x: rowLabel + c * cell, y: colLabel + r * cell, width: cell, height: cell, "data-r": r, "data-c": c, "data-w": w };
      attrs.fill = masked ? "url(#masked)" : color(w);
      if (masked) attrs.class = "masked";
      cells.append(svg("rect", attrs));
    });
  });
  parts.push(cells);
  parts.push(svg("rect", { x: rowLabel, y: colLabel, width: cols * cell, height: rows * cell, fill: "none", stroke: "#d0d7de" }));
  parts.push(svg("rect", { class: "hi", id: "row-hi", visibility: "hidden" }));
  parts.push(svg("rect", { class: "hi", id: "col-hi", visibility: "hidden" }));
  parts.push(svg("rect", { class: "cursor", id: "cell-hi", visibility: "hidden" }));
  heatmap.replaceChildren(...parts);
  heatmap.dataset.cell = String(cell);
  heatmap.dataset.left = String(rowLabel);
  heatmap.dataset.top = String(colLabel);
}

function drawLegend(masked) {
  const stops = BLUES.map((c, i) => svg("stop", { offset: `${(100 * i) / (BLUES.length - 1)}%`, "stop-color": c }));
  const scale = svg("svg", { width: 172, height: 28, role: "img", "aria-label": "Colour scale: weight 0 (white) to 1 (dark blue)" });
  const gradient = svg("linearGradient", { id: "scale" });
  gradient.append(...stops);
  const defs = svg("defs");
  defs.append(gradient);
  scale.append(defs, svg("rect", { x: 6, y: 2, width: 160, height: 10, fill: "url(#scale)", stroke: "#d0d7de" }));
  for (const v of [0, 0.5, 1]) {
    scale.append(svg("text", { x: 6 + 160 * v, y: 25, "text-anchor": v === 0 ? "start" : v === 1 ? "end" : "middle", "font-size": 11, fill: "#57606a" }, String(v)));
  }
  const items = [el("span", { textContent: "Weight" }), scale];
  if (masked) {
    const swatch = svg("svg", { width: 14, height: 14, "aria-hidden": "true" });
    swatch.append(svg("rect", { width: 14, height: 14, fill: "url(#masked)", stroke: "#d0d7de" }));
    items.push(el("span", {}, [swatch, " masked: a step may not look at later pieces"]));
    items[items.length - 1].style.display = "inline-flex";
    items[items.length - 1].style.gap = "6px";
  }
  items.push(el("span", { textContent: "Each row sums to 1." }));
  $("legend").replaceChildren(...items);
}

// --- the explorer: hover, tap and keys ----------------------------------------------------

function highlight() {
  const map = currentMap();
  const focus = state.focus || state.pinned;
  const heatmap = $("heatmap");
  const cell = Number(heatmap.dataset.cell), left = Number(heatmap.dataset.left), top = Number(heatmap.dataset.top);
  const rows = map.rowTokens.length, cols = map.colTokens.length;
  const place = (id, on, x, y, w, h) => {
    const rect = $(id);
    rect.setAttribute("visibility", on ? "visible" : "hidden");
    if (on) for (const [k, v] of Object.entries({ x, y, width: w, height: h })) rect.setAttribute(k, v);
  };
  const r = focus ? focus.r : undefined, c = focus ? focus.c : undefined;
  place("row-hi", r !== undefined, left, top + r * cell, cols * cell, cell);
  place("col-hi", c !== undefined && r === undefined, left + c * cell, top, cell, rows * cell);
  place("cell-hi", r !== undefined && c !== undefined, left + c * cell, top + r * cell, cell, cell);
  heatmap.dataset.focusRow = r === undefined ? "" : String(r);
  heatmap.dataset.focusCol = c === undefined ? "" : String(c);
  for (const t of heatmap.querySelectorAll("text")) {
    t.classList.toggle("on", (t.dataset.r !== undefined && Number(t.dataset.r) === r) || (t.dataset.c !== undefined && Number(t.dataset.c) === c));
  }
  // The other side lights up in proportion to the weight: a row's columns, or a column's rows.
  let weights = null, strip = null;
  if (r !== undefined) {
    weights = map.matrix[r];
    strip = $("col-tokens");
  } else if (c !== undefined) {
    weights = map.matrix.map((row) => row[c]);
    strip = $("row-tokens");
  }
  for (const tok of document.querySelectorAll("#row-tokens .tok, #col-tokens .tok")) {
    const own = tok.parentNode.id === "row-tokens" ? tok.dataset.r : tok.dataset.c;
    const active = tok.parentNode.id === "row-tokens" ? Number(own) === r : Number(own) === c;
    tok.classList.toggle("active", active);
    if (weights && tok.parentNode === strip) {
      const w = weights[Number(own)];
      tok.dataset.weight = String(w);
      tok.style.background = color(w);
      tok.classList.toggle("dark", w > 0.5);
      tok.title = w.toFixed(3);
    } else {
      delete tok.dataset.weight;
      tok.style.background = "";
      tok.classList.remove("dark", "top");
      tok.title = "";
    }
  }
  if (weights) {
    const best = weights.indexOf(Math.max(...weights));
    strip.querySelectorAll(".tok").forEach((tok, i) => tok.classList.toggle("top", i === best));
  }
  $("readout").textContent = describeFocus(map, r, c);
}

function describeFocus(map, r, c) {
  if (r === undefined && c === undefined) return "";
  const pct = (w) => `${(100 * w).toFixed(1)}%`;
  if (r !== undefined && c !== undefined) {
    const masked = map.kind === "decoder" && c > r;
    return `${map.rowTokens[r]} \u2192 ${map.colTokens[c]}: ${masked ? "masked (a later piece)" : map.matrix[r][c].toFixed(3)}`;
  }
  const weights = r !== undefined ? map.matrix[r] : map.matrix.map((row) => row[c]);
  const names = r !== undefined ? map.colTokens : map.rowTokens;
  const top = weights.map((w, i) => [w, i]).sort((a, b) => b[0] - a[0]).slice(0, 4);
  const list = top.map(([w, i]) => `${names[i]} ${pct(w)}`).join(", ");
  return r !== undefined
    ? `${map.rowTokens[r]} attends to ${list}`
    : `${map.colTokens[c]} is attended by ${list}`;
}

function focusFrom(node) {
  const d = node && node.dataset;
  if (!d) return null;
  const tok = node.classList && node.classList.contains("tok");
  // A token stands for its row or column; a heatmap cell for both.
  if (tok && d.r !== undefined) return { r: Number(d.r) };
  if (tok && d.c !== undefined) return { c: Number(d.c) };
  const f = {};
  if (d.r !== undefined) f.r = Number(d.r);
  if (d.c !== undefined) f.c = Number(d.c);
  return "r" in f || "c" in f ? f : null;
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

function setFocus(focus) {
  state.focus = focus;
  highlight();
}

function showTooltip(event) {
  const tip = $("tooltip");
  const text = $("readout").textContent;
  tip.hidden = !text;
  tip.textContent = text;
  const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  tip.style.left = `${Math.max(4, x)}px`;
  tip.style.top = `${event.clientY + 18}px`;
}

function wireExplorer() {
  const targets = [$("heatmap"), $("row-tokens"), $("col-tokens")];
  for (const target of targets) {
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
    strip.addEventListener("keydown", (event) => rove(event, strip.querySelectorAll(".tok")));
  }
  const heatmap = $("heatmap");
  heatmap.addEventListener("focus", () => setFocus({ ...state.cursor }));
  heatmap.addEventListener("blur", () => setFocus(null));
  heatmap.addEventListener("keydown", (event) => {
    const move = { ArrowRight: [0, 1], ArrowLeft: [0, -1], ArrowDown: [1, 0], ArrowUp: [-1, 0] }[event.key];
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

// --- the word alignment -----------------------------------------------------------------

// Whitespace words of a list of pieces: a piece starting with "▁" starts a word (as in
// attention_maps.word_index).
function words(pieces) {
  const out = [];
  pieces.forEach((piece, i) => {
    const text = piece.startsWith(WORD) ? piece.slice(1) : piece;
    if (i === 0 || piece.startsWith(WORD)) out.push(text);
    else out[out.length - 1] += text;
  });
  return out;
}

function drawAlignment() {
  const data = state.explorer.data;
  const box = $("alignment");
  const source = words(data.source_tokens.slice(0, -1));
  const output = words(data.output_tokens.slice(0, -1));
  const font = "13px system-ui, sans-serif";
  const wide = (list) => Math.ceil(Math.max(0, ...list.map((w) => textWidth(w, font))));
  const line = 22, top = 22;
  const room = box.parentNode.clientWidth || 300;
  const heading = "600 13px system-ui, sans-serif";
  const leftW = Math.min(Math.max(wide(source), textWidth("Source", heading)), room * 0.4) + 4;
  const rightW = Math.min(Math.max(wide(output), textWidth("Output", heading)), room * 0.4) + 4;
  const gap = Math.max(60, Math.min(140, room - leftW - rightW));
  const width = leftW + gap + rightW;
  const height = top + Math.max(source.length, output.length) * line + 4;
  box.setAttribute("width", width);
  box.setAttribute("height", height);
  box.setAttribute("viewBox", `0 0 ${width} ${height}`);
  box.setAttribute("aria-label", `Word alignment: ${data.alignment.map(([s, t]) => `${source[s]} to ${output[t]}`).join(", ")}`);
  const parts = [
    svg("text", { x: leftW, y: 12, "text-anchor": "end", "font-weight": 600, fill: "#57606a" }, "Source"),
    svg("text", { x: leftW + gap, y: 12, "font-weight": 600, fill: "#57606a" }, "Output"),
  ];
  const y = (i) => top + i * line + line / 2;
  source.forEach((w, i) => parts.push(svg("text", { x: leftW, y: y(i), "text-anchor": "end", "dominant-baseline": "central", "data-s": i, tabindex: i === 0 ? 0 : -1 }, w)));
  output.forEach((w, i) => parts.push(svg("text", { x: leftW + gap, y: y(i), "dominant-baseline": "central", "data-t": i, tabindex: i === 0 ? 0 : -1 }, w)));
  for (const [s, t] of data.alignment) {
    parts.push(svg("line", { x1: leftW + 6, y1: y(s), x2: leftW + gap - 6, y2: y(t), "data-s": s, "data-t": t }));
  }
  box.replaceChildren(...parts);
  box.dataset.pairs = data.alignment.map(([s, t]) => `${s}-${t}`).join(" ");
}

function wireAlignment() {
  const box = $("alignment");
  const light = (node) => {
    const s = node && node.dataset ? node.dataset.s : undefined;
    const t = node && node.dataset ? node.dataset.t : undefined;
    const on = (n) => (s !== undefined && n.dataset.s === s) || (t !== undefined && n.dataset.t === t);
    box.classList.toggle("focus", s !== undefined || t !== undefined);
    const lines = [...box.querySelectorAll("line")];
    for (const l of lines) l.classList.toggle("on", on(l));
    // The words at the other end of the lit lines light up too.
    const ends = lines.filter((l) => l.classList.contains("on"));
    for (const w of box.querySelectorAll("text[data-s], text[data-t]")) {
      const lit = ends.some((l) => (w.dataset.s !== undefined ? l.dataset.s === w.dataset.s : l.dataset.t === w.dataset.t));
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

// --- start ------------------------------------------------------------------------------

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
  loadModels();
}

start();
