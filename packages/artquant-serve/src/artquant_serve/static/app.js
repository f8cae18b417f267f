// ArtQuant gallery: plain JavaScript, no build step. Pictures are sent one per request, a few
// at a time, so badges fill in as results arrive and the server batches concurrent requests.
"use strict";

const IN_FLIGHT = 4;
const IMAGE_NAME = /\.(png|jpe?g|webp|gif|bmp|tiff?)$/i;

const state = {
  items: [],          // {id, file, name, url, result, error, state}
  queue: [],
  running: 0,
  levelWords: [],
  scale: null,
  describe: false,
  key: sessionStorage.getItem("artquant-key") || "",
  needKey: false,
  opened: null,       // the card that opened the dialog (focus returns to it)
};

const $ = (id) => document.getElementById(id);

function headers() {
  return state.key ? { Authorization: `Bearer ${state.key}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (response.status === 401) {
    askForKey(body && body.error ? body.error.message : "This server needs an API key.");
  }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function askForKey(message) {
  state.needKey = true;
  $("key-form").hidden = false;
  $("key-help").textContent = message;
  $("key").focus();
}

async function loadModel() {
  try {
    const info = await api("/v1/models");
    state.levelWords = info.level_words;
    state.scale = info.scale;
    state.describe = info.describe;
    $("model").textContent =
      `Model ${info.name} · scores from ${info.scale[0]} to ${info.scale[1]} · levels ${info.level_words.join(", ")}`;
    return true;
  } catch (error) {
    $("model").textContent = error.status === 401 ? "Enter the API key to start." : `Server not ready: ${error.message}`;
    return false;
  }
}

function fmt(value, digits) {
  return typeof value === "number" ? value.toFixed(digits) : "";
}

function addFiles(files) {
  let skipped = 0;
  for (const file of files) {
    if (!(file.type.startsWith("image/") || IMAGE_NAME.test(file.name))) { skipped += 1; continue; }
    const name = file.webkitRelativePath || file.name;
    const item = { id: state.items.length, file, name, url: URL.createObjectURL(file), result: null, error: null, state: "pending" };
    state.items.push(item);
    state.queue.push(item);
  }
  render();
  if (skipped) announce(`${skipped} file(s) skipped: not pictures.`);
  pump();
}

function pump() {
  if (state.needKey) return;
  while (state.running < IN_FLIGHT && state.queue.length) {
    const item = state.queue.shift();
    state.running += 1;
    scoreOne(item).finally(() => { state.running -= 1; pump(); });
  }
}

async function scoreOne(item) {
  const form = new FormData();
  form.append("files", item.file, item.name);
  try {
    const body = await api("/v1/score", { method: "POST", body: form });
    const result = body.results[0];
    if (!state.levelWords.length) { state.levelWords = body.level_words; state.scale = body.scale; }
    if (result.error) { item.error = result.error.message; item.state = "error"; }
    else { item.result = result; item.state = "done"; }
  } catch (error) {
    if (error.status === 401) { item.state = "pending"; state.queue.unshift(item); return; }
    item.error = error.message;
    item.state = "error";
  }
  update(item);
}

function sorted() {
  const mode = $("sort").value;
  const items = [...state.items];
  if (mode === "upload") return items;
  const sign = mode === "score-desc" ? -1 : 1;
  const key = (item) => (item.result ? item.result.score : null);
  return items.sort((a, b) => {
    const ka = key(a), kb = key(b);
    if (ka === null && kb === null) return a.id - b.id;
    if (ka === null) return 1;
    if (kb === null) return -1;
    return sign * (ka - kb) || a.id - b.id;
  });
}

function label(item) {
  if (item.state === "done") return `${item.name}, score ${fmt(item.result.score, 2)} (${item.result.level}). Open details`;
  if (item.state === "error") return `${item.name}, not scored: ${item.error}. Open details`;
  return `${item.name}, scoring. Open details`;
}

function card(item) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "card";
  button.dataset.id = String(item.id);
  const img = document.createElement("img");
  img.src = item.url;
  img.alt = item.name;
  img.loading = "lazy";
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.setAttribute("aria-hidden", "true");
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = item.name;
  button.append(img, badge, name);
  button.addEventListener("click", () => openDetails(item, button));
  li.append(button);
  fill(item, button);
  return li;
}

function fill(item, button) {
  const badge = button.querySelector(".badge");
  badge.dataset.state = item.state;
  badge.textContent = item.state === "done" ? fmt(item.result.score, 2) : item.state === "error" ? "error" : "…";
  button.setAttribute("aria-label", label(item));
}

function render() {
  const gallery = $("gallery");
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.id : undefined;
  gallery.replaceChildren(...sorted().map(card));
  if (focused !== undefined) {
    const again = gallery.querySelector(`button[data-id="${focused}"]`);
    if (again) again.focus();
  }
  progress();
}

function update(item) {
  if ($("sort").value !== "upload") { render(); return; }
  const button = $("gallery").querySelector(`button[data-id="${item.id}"]`);
  if (button) fill(item, button);
  progress();
}

function progress() {
  const total = state.items.length;
  const done = state.items.filter((i) => i.state === "done").length;
  const failed = state.items.filter((i) => i.state === "error").length;
  $("status").textContent = total
    ? `${done} of ${total} scored${failed ? `, ${failed} could not be read` : ""}.`
    : "No pictures yet.";
  $("csv").disabled = done + failed === 0;
}

function announce(text) {
  $("status").textContent = text;
}

function openDetails(item, button) {
  state.opened = button;
  $("details-title").textContent = item.name;
  const image = $("details-image");
  image.src = item.url;
  image.alt = item.name;
  const bars = $("bars");
  bars.replaceChildren();
  $("details-error").hidden = !item.error;
  $("details-error").textContent = item.error || "";
  if (item.result) {
    const r = item.result;
    $("details-score").textContent = `Score ${fmt(r.score, 2)} (${r.level}) · std ${fmt(r.std, 2)}`;
    for (const word of state.levelWords) {
      const p = r.probs[word];
      const dt = document.createElement("dt");
      dt.textContent = word;
      const bar = document.createElement("dd");
      bar.className = "bar";
      bar.setAttribute("role", "img");
      bar.setAttribute("aria-label", `${word}: ${(100 * p).toFixed(1)} percent`);
      const fillBar = document.createElement("span");
      fillBar.style.width = `${(100 * p).toFixed(2)}%`;
      bar.append(fillBar);
      const pct = document.createElement("dd");
      pct.className = "pct";
      pct.dataset.word = word;
      pct.textContent = `${(100 * p).toFixed(1)}%`;
      bars.append(dt, bar, pct);
    }
  } else {
    $("details-score").textContent = item.state === "pending" ? "Scoring…" : "No score.";
  }
  $("describe-box").hidden = !state.describe || !item.result;
  $("description").textContent = item.description || "";
  $("describe").onclick = () => describe(item);
  $("details").showModal();
  $("close").focus();
}

async function describe(item) {
  const button = $("describe");
  button.disabled = true;
  $("description").textContent = "Describing… (this can take a while)";
  const form = new FormData();
  form.append("image", item.file, item.name);
  try {
    const body = await api("/v1/describe", { method: "POST", body: form });
    item.description = body.description;
    $("description").textContent = body.description;
  } catch (error) {
    $("description").textContent = `Could not describe it: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

function csvField(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function downloadCsv() {
  const header = ["image", "score", "std", "level", ...state.levelWords.map((w) => `p_${w}`), "error"];
  const rows = [header];
  for (const item of state.items) {
    const r = item.result;
    rows.push([
      item.name,
      r ? r.score : "",
      r ? r.std : "",
      r ? r.level : "",
      ...state.levelWords.map((w) => (r ? r.probs[w] : "")),
      item.error || "",
    ]);
  }
  const text = rows.map((row) => row.map(csvField).join(",")).join("\r\n") + "\r\n";
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  link.download = "artquant-scores.csv";
  document.body.append(link);
  link.click();
  link.remove();
}

async function filesFromEntry(entry) {
  if (entry.isFile) return new Promise((resolve) => entry.file((f) => resolve([f]), () => resolve([])));
  if (!entry.isDirectory) return [];
  const reader = entry.createReader();
  const out = [];
  for (;;) {
    const batch = await new Promise((resolve) => reader.readEntries(resolve, () => resolve([])));
    if (!batch.length) break;
    for (const child of batch) out.push(...(await filesFromEntry(child)));
  }
  return out;
}

function setUpDrop() {
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const entries = [...event.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
    if (entries.length) {
      const files = [];
      for (const entry of entries) files.push(...(await filesFromEntry(entry)));
      addFiles(files);
    } else {
      addFiles(event.dataTransfer.files);
    }
  });
}

function setUp() {
  setUpDrop();
  $("files").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  $("folder").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  $("sort").addEventListener("change", render);
  $("csv").addEventListener("click", downloadCsv);
  $("close").addEventListener("click", () => $("details").close());
  $("details").addEventListener("close", () => { if (state.opened) state.opened.focus(); });
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem("artquant-key", state.key);
    if (await loadModel()) {
      state.needKey = false;
      $("key-form").hidden = true;
      pump();
    }
  });
  loadModel();
}

document.addEventListener("DOMContentLoaded", setUp);
