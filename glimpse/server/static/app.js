// The glimpse search page: plain ES module, no build step, no network beyond this server.
const $ = (id) => document.getElementById(id);
const form = $("search-form"), q = $("q"), fileInput = $("file");
const results = $("results"), statusLine = $("status"), empty = $("empty"), errorBox = $("error");
const viewer = $("viewer");

// What the next search uses besides the words: an image (File) or an item to match (id).
const state = { image: null, like: null, hits: [], current: null, seq: 0 };

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
}
function clearError() { errorBox.hidden = true; errorBox.textContent = ""; }
window.addEventListener("error", (e) => showError(`page error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => showError(`page error: ${e.reason?.message ?? e.reason}`));

async function api(url, options = {}) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error(`cannot reach the glimpse server (${err.message})`);
  }
  // Item ids may pass 2**53 (a Milvus collection's come from content hashes), beyond what a
  // number holds exactly: they are kept as text (the API takes them back as text too).
  const body = response.headers.get("content-type")?.includes("json")
    ? JSON.parse((await response.text()).replace(/"id":\s*(\d{16,})/g, '"id":"$1"')) : null;
  if (!response.ok) throw new Error(body?.error ?? `${response.status} ${response.statusText}`);
  return body;
}

function filters() {
  const out = {};
  for (const el of $("filters").querySelectorAll("input[name], select[name]")) {
    if (["min_score", "k", "alpha"].includes(el.name) || el.value === "") continue;
    out[el.name] = el.type === "number" ? Number(el.value) : el.value;
  }
  return Object.keys(out).length ? out : null;
}

function request() {
  const req = { k: Number($("k").value) };
  const text = q.value.trim();
  if (state.like !== null) req.like = state.like;
  // A text:"..." phrase matches the words read in the pictures, as in `glimpse search`: the
  // query language goes as terms (as plain text it would be searched for by meaning).
  if (text && !state.image && /(^|\s)text:/i.test(text)) req.terms = text;
  else if (text) req.text = text;
  const f = filters();
  if (f) req.filters = f;
  if ($("min-score").value !== "") req.min_score = Number($("min-score").value);
  if ($("alpha").dataset.touched && state.image && text) req.alpha = Number($("alpha").value);
  return req;
}

async function search() {
  clearError();
  const req = request();
  if (!state.image && req.text === undefined && req.terms === undefined && req.like === undefined) {
    statusLine.textContent = "Type some words, or drop, paste or pick an image.";
    q.focus();
    return;
  }
  const seq = ++state.seq;  // answers to older searches are dropped
  statusLine.textContent = "Searching…";
  let answer;
  try {
    if (state.image) {
      const body = new FormData();
      body.append("image", state.image, state.image.name || "pasted-image");
      body.append("query", JSON.stringify(req));
      answer = await api("/api/search/image", { method: "POST", body });
    } else {
      answer = await api("/api/search", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(req),
      });
    }
  } catch (err) {
    if (seq !== state.seq) return;
    statusLine.textContent = "";
    showError(err.message);
    return;
  }
  if (seq === state.seq) render(answer);
}

function basename(path) { return path.split("/").pop(); }

function render(answer) {
  state.hits = answer.results;
  results.replaceChildren(...answer.results.map((hit, i) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "result";
    button.dataset.id = hit.id;
    button.dataset.index = i;
    button.title = hit.path;
    // An item of precomputed vectors is a key with no image (null URLs): its tile shows the key.
    const img = document.createElement(hit.thumbnail ? "img" : "span");
    if (hit.thumbnail) {
      img.src = hit.thumbnail;
      img.alt = basename(hit.path);
      img.loading = "lazy";
    } else {
      img.className = "key";
      img.textContent = hit.path;
    }
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.innerHTML = `<span class="name"></span><span class="score"></span>`;
    meta.querySelector(".name").textContent = basename(hit.path);
    meta.querySelector(".score").textContent = hit.score.toFixed(3);
    button.append(img, meta);
    button.addEventListener("click", () => openViewer(i));
    li.append(button);
    return li;
  }));
  empty.hidden = answer.results.length > 0;
  const n = answer.results.length;
  statusLine.textContent = n ? `${n} result${n === 1 ? "" : "s"} in ${answer.took_ms.toFixed(1)} ms` : "";
}

async function openViewer(index) {
  const hit = state.hits[index];
  state.current = hit;
  $("viewer-img").hidden = $("viewer-open").hidden = !hit.thumbnail;
  if (hit.thumbnail) $("viewer-img").src = `${hit.thumbnail}?size=1024`;
  else $("viewer-img").removeAttribute("src");
  showWords({ words: [], width: 1, height: 1 });  // the last image's words go until this one's come
  $("viewer-img").alt = basename(hit.path);
  $("viewer-path").textContent = hit.path;
  $("viewer-meta").textContent = `score ${hit.score.toFixed(3)} · id ${hit.id}`;
  if (hit.image) $("viewer-open").href = hit.image;
  if (!viewer.open) viewer.showModal();
  $("more-like").focus();
  try {
    const item = await api(`/api/items/${hit.id}`);
    if (state.current !== hit) return;
    const others = item.paths.length > 1 ? ` · ${item.paths.length - 1} more cop${item.paths.length === 2 ? "y" : "ies"}` : "";
    $("viewer-meta").textContent =
      `score ${hit.score.toFixed(3)} · id ${hit.id} · ${item.width}×${item.height} · ${(item.bytes / 1024).toFixed(0)} KiB${others}`;
    showWords(item);
  } catch (err) {
    showError(err.message);
  }
}

// The words read in the picture (glimpse enrich --ocr), with the ones the query names marked
// on the image, so people see why it matched. Boxes are in the full image's pixels.
function showWords(item) {
  const words = item.words ?? [], boxes = $("viewer-boxes"), line = $("viewer-words");
  const squash = (text) => text.toLowerCase().replace(/[^\p{L}\p{N}]/gu, "");
  const wanted = q.value.toLowerCase().replace(/text:/g, " ").split(/[^\p{L}\p{N}]+/u).filter((t) => t.length >= 3);
  boxes.setAttribute("viewBox", `0 0 ${item.width} ${item.height}`);
  boxes.replaceChildren();
  line.replaceChildren();
  line.hidden = words.length === 0;
  if (words.length) line.append("words: ");
  words.forEach((word, i) => {
    const match = wanted.some((t) => squash(word.text).includes(t));
    const shape = document.createElementNS(boxes.namespaceURI, "polygon");
    shape.setAttribute("points", word.box.map(([x, y]) => `${x},${y}`).join(" "));
    if (match) shape.classList.add("match");
    boxes.append(shape);
    const label = document.createElement(match ? "mark" : "span");
    label.textContent = word.text;
    line.append(...(i ? [" · ", label] : [label]));
  });
}

function setImage(file) {
  if (!file) return;
  state.image = file;
  state.like = null;
  $("like-chip").hidden = true;
  const preview = $("image-preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  $("image-chip").hidden = false;
  search();
}

function clearImage() {
  state.image = null;
  $("image-chip").hidden = true;
  fileInput.value = "";
}

function moreLike(hit) {
  clearImage();
  q.value = "";
  state.like = hit.id;
  $("like-label").textContent = `like ${basename(hit.path)}`;
  $("like-chip").hidden = false;
  viewer.close();
  search();
}

// --- wiring ------------------------------------------------------------------------------
form.addEventListener("submit", (e) => { e.preventDefault(); search(); });
fileInput.addEventListener("change", () => setImage(fileInput.files[0]));
$("clear-image").addEventListener("click", () => { clearImage(); q.focus(); });
$("clear-like").addEventListener("click", () => { state.like = null; $("like-chip").hidden = true; q.focus(); });
$("alpha").addEventListener("input", (e) => { e.target.dataset.touched = "1"; });
$("more-like").addEventListener("click", () => moreLike(state.current));
$("viewer-close").addEventListener("click", () => viewer.close());
viewer.addEventListener("close", () => {
  const button = results.querySelector(`.result[data-id="${state.current?.id}"]`);
  if (button) button.focus();
});

let dragDepth = 0;
document.addEventListener("dragenter", (e) => {
  if (!e.dataTransfer?.types?.includes("Files")) return;
  dragDepth++;
  $("drop-overlay").hidden = false;
});
document.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("drop-overlay").hidden = true; } });
document.addEventListener("dragover", (e) => e.preventDefault());
document.addEventListener("drop", (e) => {
  e.preventDefault();
  dragDepth = 0;
  $("drop-overlay").hidden = true;
  const file = e.dataTransfer?.files?.[0];
  if (file) setImage(file);
});
document.addEventListener("paste", (e) => {
  const item = [...(e.clipboardData?.items ?? [])].find((i) => i.kind === "file" && i.type.startsWith("image/"));
  const file = item?.getAsFile();
  if (file) {
    e.preventDefault();
    setImage(file);
  }
});

// Keyboard: "/" focuses the box, Escape clears it, arrows walk the grid.
document.addEventListener("keydown", (e) => {
  if (viewer.open) return;  // the dialog handles its own keys (Escape closes it)
  const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement?.tagName);
  if (e.key === "/" && !typing) {
    e.preventDefault();
    q.focus();
    q.select();
    return;
  }
  if (e.key === "Escape" && document.activeElement === q) { q.value = ""; return; }
  const current = document.activeElement?.closest?.(".result");
  if (e.key === "ArrowDown" && document.activeElement === q) {
    results.querySelector(".result")?.focus();
    e.preventDefault();
    return;
  }
  if (!current || !["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(e.key)) return;
  const buttons = [...results.querySelectorAll(".result")];
  const index = buttons.indexOf(current);
  const columns = buttons.filter((b) => b.offsetTop === buttons[0].offsetTop).length;
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns, ArrowDown: columns }[e.key];
  const next = index + step;
  if (next < 0 && e.key === "ArrowUp") q.focus();
  else buttons[Math.min(buttons.length - 1, Math.max(0, next))]?.focus();
  e.preventDefault();
});

api("/api/stats").then((s) => {
  $("stats").textContent = `${s.images.toLocaleString()} images · ${s.encoder}`;
}).catch((err) => showError(err.message));
q.focus();
