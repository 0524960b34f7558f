// The rvs search page: upload a photo or a clip, pick a face, move the threshold, browse the hits,
// search for more like a hit, reject hits ("not this person"), name who is in a hit ("This is…"),
// and browse, name, merge and split the people of the index. A photo or clip is sent once; the
// server keeps what it found under a query id, so a new threshold, face, filter or rejection is a
// request to /api/search/{queryId} (/api/clip/{queryId}) with no upload; rejections travel in a
// POST's body. Answers are the proto messages in canonical JSON (int64 fields arrive as strings).

const $ = (id) => document.getElementById(id);

const state = {
  // What is searched: {kind: "photo", file, queryId, faceIndex}, {kind: "clip", file, queryId} (the
  // file kept to send again if the server forgot the query), or {kind: "similar", faceId | trackId
  // | personId, mediaId, timeMs, box, label}: a face, track or person of the index.
  query: null,
  rejected: [], // this query's "not this person": {kind: "face" | "track", id, label}
  result: null, // the current query's last answer; null until it has one
  limits: null, // GET /api/limits: sizes the server accepts
  seq: 0, // searches started: only the latest one's answer is shown
  statusTimer: null,
  person: null, // the person opened in the People view: {personId, name, …}
};

// -- helpers ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.reason = ((error.details || [])[0] || {}).reason || "";
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) showLogin();
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // not JSON: the status says enough
    }
    throw new ApiError(response.status, body);
  }
  return response.status === 204 ? null : response.json();
}

function postJson(path, body) {
  return api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
}

// Every page of a listing (/api/media, /api/people): its items, and the last page (its totals).
async function listAll(path, field) {
  const items = [];
  let token = "";
  let page;
  do {
    page = await api(`${path}${path.includes("?") ? "&" : "?"}page_size=1000&page_token=${encodeURIComponent(token)}`);
    items.push(...page[field]);
    token = page.nextPageToken;
  } while (token);
  return [items, page];
}

const describe = (err) => (err.reason ? `${err.message} (${err.reason})` : err.message);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function clock(ms) {
  const s = Math.max(0, Number(ms)) / 1000;
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
}

const wallClock = (ms) => new Date(Number(ms)).toLocaleString();
const fileName = (uri) => uri.split(/[\\/]/).pop() || uri;
const score = (x) => Number(x).toFixed(3);
const boxParam = (b) => [b.x1, b.y1, b.x2, b.y2].map((v) => Math.round(Number(v) || 0)).join(",");
const frameUrl = (mediaId, timeMs, box, side) =>
  `/api/media/${encodeURIComponent(mediaId)}/frame?t_ms=${Number(timeMs) || 0}&side=${side}` +
  (box ? `&box=${boxParam(box)}` : "");

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// -- log in -------------------------------------------------------------------------------------

function showLogin() {
  $("login").hidden = false;
  $("app").hidden = true;
  $("token").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    await api("/api/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: $("token").value }),
    });
    $("token").value = "";
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    loadLimits();
    refreshStatus();
    refreshNames();
    route();
  } catch (err) {
    $("login-error").textContent = err.message;
  }
});

$("logout").addEventListener("click", async () => {
  await api("/api/session", { method: "DELETE" });
  location.reload();
});

// -- the query: a photo, a clip, or a face of the index ("more like this") ----------------------

$("file").addEventListener("change", () => {
  if ($("file").files.length) startSearch($("file").files[0]);
  $("file").value = ""; // the same file chosen again is a new search
});

const drop = $("drop");
const searchable = (type) => type.startsWith("image/") || type.startsWith("video/");
for (const type of ["dragenter", "dragover"]) {
  document.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) {
  document.addEventListener(type, () => drop.classList.remove("over"));
}
document.addEventListener("drop", (event) => {
  event.preventDefault();
  const files = [...event.dataTransfer.files];
  const file = files.find((f) => searchable(f.type));
  if (file) startSearch(file);
  else if (files.length) showError(`${files[0].name || "That file"} is neither a photo nor a video: drop a photo or a clip.`);
});
document.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((i) => i.kind === "file" && searchable(i.type));
  if (item) startSearch(item.getAsFile());
});

const megabytes = (n) => `${(n / (1024 * 1024)).toFixed(1)} MB`;

// What the server accepts, checked here before a large file is sent (the server checks again).
function tooLarge(file, isClip) {
  if (!state.limits) return null;
  const limit = isClip ? state.limits.maxQueryVideoBytes : state.limits.maxMessageBytes;
  if (file.size <= limit) return null;
  // Megabytes, unless they hide the difference.
  const [size, largest] =
    megabytes(file.size) === megabytes(limit) ? [`${file.size} bytes`, `${limit} bytes`] : [megabytes(file.size), megabytes(limit)];
  const [what, setting, reason] = isClip
    ? ["clip", "RVS_MAX_QUERY_VIDEO_BYTES", "VIDEO_TOO_LARGE"]
    : ["photo", "RVS_MAX_MESSAGE_BYTES", "REQUEST_TOO_LARGE"];
  return `${file.name || `The ${what}`} is ${size}; the largest ${what} accepted is ${largest} (${setting}): nothing was sent. (${reason})`;
}

function newQuery(query) {
  state.query = query;
  state.rejected = [];
  state.result = null; // a new query starts at the model's threshold
  drawRejections();
}

async function startSearch(file) {
  const isClip = file.type.startsWith("video/");
  const refused = tooLarge(file, isClip);
  if (refused) {
    showError(refused);
    return;
  }
  const img = $("query-img");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  $("faces").replaceChildren();
  $("faces-caption").textContent = "";
  if (isClip) {
    newQuery({ kind: "clip", file, queryId: null });
    img.removeAttribute("src");
    $("query-figure").hidden = true;
  } else {
    newQuery({ kind: "photo", file, queryId: null, faceIndex: 0 });
    img.src = URL.createObjectURL(file);
    img.alt = "The query photo";
    $("query-figure").hidden = false;
  }
  await search();
}

// "More like this": a face (photos), a track (video segments) or a person of the index, no upload.
async function moreLikeThis(query) {
  location.hash = "#/"; // from the People view too: the answer is shown in the search view
  newQuery({ kind: "similar", ...query });
  const img = $("query-img");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = frameUrl(query.mediaId, query.timeMs, query.box, 640);
  img.alt = `The face searched with: ${query.label}`;
  $("faces").replaceChildren();
  $("faces-caption").textContent = `More like this: ${query.label}.`;
  $("query-figure").hidden = false;
  // The button pressed is gone with the results it was in: the keyboard goes on from what is shown.
  if ((await search()) === "shown") $("searched").focus();
}

function options() {
  const q = state.query;
  const params = new URLSearchParams({ kinds: $("kinds").value });
  if (q.kind === "photo") params.set("face_index", String(q.faceIndex));
  if (q.kind === "similar") {
    const [name, id] = q.trackId ? ["track_id", q.trackId] : q.personId ? ["person_id", q.personId] : ["face_id", q.faceId];
    params.set(name, id);
  }
  if (state.result) params.set("min_score", $("threshold").value);
  params.set("order", $("order").value);
  // The window in the browser's local time, sent as unix ms.
  for (const [id, name] of [["seen-after", "seen_after"], ["seen-before", "seen_before"]]) {
    const at = new Date($(id).value).getTime();
    if ($(id).value && Number.isFinite(at)) params.set(name, String(at));
  }
  return params;
}

function rejectionsBody() {
  const ids = (kind) => state.rejected.filter((r) => r.kind === kind).map((r) => r.id);
  return {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ rejectedFaceIds: ids("face"), rejectedTrackIds: ids("track") }),
  };
}

// The file of a photo or clip query, sent (again): the server keeps what it found under a query id.
function send(q) {
  const path = q.kind === "clip" ? "/api/clip" : "/api/search";
  return api(`${path}?${options()}`, {
    method: "POST",
    headers: { "content-type": q.file.type || "application/octet-stream" },
    body: q.file,
  });
}

// The kept query searched again: a new threshold, face, filter or rejection; no upload.
function again(q) {
  const path = `/api/${q.kind === "clip" ? "clip" : "search"}/${encodeURIComponent(q.queryId)}?${options()}`;
  return state.rejected.length ? api(path, rejectionsBody()) : api(path);
}

// Search for the current query as it now stands: "shown" once its answer is, "failed" (its error
// is shown), or "superseded": only the latest search's answer or error is shown, whatever order
// the answers come in.
async function search() {
  const q = state.query;
  if (!q) return "failed";
  const seq = ++state.seq;
  $("query-error").textContent = "";
  $("query-status").textContent = q.queryId || q.kind === "similar"
    ? "Searching…"
    : q.kind === "clip"
      ? "Looking for the people in the clip, and searching for each…"
      : "Looking for faces and searching…";
  try {
    const result = await answerFor(q);
    if (seq !== state.seq) return "superseded";
    show(result);
    return "shown";
  } catch (err) {
    if (seq !== state.seq) return "superseded";
    failed(err);
    return "failed";
  }
}

async function answerFor(q) {
  if (q.kind === "similar") return (await api(`/api/similar?${options()}`, rejectionsBody())).result;
  if (q.queryId) {
    try {
      return (await again(q)).result;
    } catch (err) {
      if (err.reason !== "QUERY_EXPIRED") throw err;
      q.queryId = null; // the server no longer keeps it: the file again
    }
  }
  const answer = await send(q);
  q.queryId = answer.queryId;
  // An upload carries no rejections: with some, the query it made is searched again with them.
  return state.rejected.length ? (await again(q)).result : answer.result;
}

function showError(message) {
  $("query-status").textContent = "";
  $("query-error").textContent = message;
}

function failed(err) {
  showError(describe(err));
  // The first search of a new query failed: the results on show are another query's.
  if (!state.result) {
    clearResults();
    $("searched").textContent = "";
  }
}

const searchSoon = debounce(search, 150);
$("threshold").addEventListener("input", () => {
  $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
  if (state.result) searchSoon();
});
for (const id of ["kinds", "order", "seen-after", "seen-before"]) {
  $(id).addEventListener("change", () => {
    if (state.result) search();
  });
}

// -- "not this person" --------------------------------------------------------------------------

async function reject(item) {
  if (state.rejected.some((r) => r.kind === item.kind && r.id === item.id)) return;
  const query = state.query;
  state.rejected.push(item);
  drawRejections();
  const outcome = await search();
  if (outcome === "shown") {
    // The result is gone with its button: the keyboard goes on from its Undo.
    $("rejected-list").querySelectorAll("button.undo")[state.rejected.indexOf(item)]?.focus();
  } else if (outcome === "failed" && state.query === query) {
    // Not applied (too many, say): taken back, so the list matches the results on show.
    state.rejected = state.rejected.filter((r) => r !== item);
    drawRejections();
    showError(`${item.label} was not rejected: ${$("query-error").textContent}`);
  }
}

async function undo(items) {
  const query = state.query;
  const before = state.rejected;
  state.rejected = before.filter((r) => !items.includes(r));
  drawRejections();
  const outcome = await search();
  if (outcome === "shown") $("searched").focus();
  else if (outcome === "failed" && state.query === query) {
    state.rejected = before; // not undone: the results on show still leave them out
    drawRejections();
  }
}

function drawRejections() {
  const n = state.rejected.length;
  $("rejections").hidden = n === 0;
  $("rejections-summary").textContent =
    n === 0 ? "" : `Not this person: ${n} result${n === 1 ? "" : "s"} rejected, and whatever looks more like ${n === 1 ? "it" : "them"} than the query.`;
  $("rejected-list").replaceChildren(
    ...state.rejected.map((item) =>
      el(
        "li",
        { "data-id": item.id },
        el("span", {}, item.label),
        el("button", { type: "button", class: "link undo", "aria-label": `Undo: ${item.label} may be this person`, onclick: () => undo([item]) }, "Undo"),
      ),
    ),
  );
  $("undo-all").hidden = n < 2;
}
$("undo-all").addEventListener("click", () => undo([...state.rejected]));

// -- results ------------------------------------------------------------------------------------

function show(r) {
  state.result = r;
  const q = state.query;
  const minScore = Number(r.minScore).toFixed(2);
  $("query-status").textContent = `Model ${r.model}.`;
  $("threshold").disabled = false;
  for (const id of ["kinds", "order", "seen-after", "seen-before"]) $(id).disabled = false;
  $("threshold").value = minScore;
  $("threshold-value").textContent = minScore;
  if (q.kind === "photo") {
    q.faceIndex = r.usedFaceIndex;
    drawFaces(r);
  }
  $("searched").textContent = searchedWith(q, r);
  if (q.kind === "clip") drawClip(r);
  else drawResults(r);
}

function searchedWith(q, r) {
  if (q.kind === "similar" && q.personId) return `Searched with ${q.label}, a person of the index.`;
  if (q.kind === "similar") return `Searched with ${q.trackId ? "the person" : "the face"} in ${q.label} (more like this).`;
  const name = q.file.name || (q.kind === "clip" ? "the clip" : "the photo");
  if (q.kind === "clip") {
    const cut = Number(r.tracksFound) > r.tracks.length ? ` (the ${r.tracks.length} seen longest of ${r.tracksFound})` : "";
    return `Searched with the clip ${name} (${clock(r.durationMs)}, ${r.samples} samples): ${r.tracks.length} ${r.tracks.length === 1 ? "person" : "people"}${cut}.`;
  }
  return `Searched with face ${r.usedFaceIndex + 1} of ${r.queryFaces.length} in ${name}.`;
}

function drawFaces(r) {
  const img = $("query-img");
  const place = () => {
    const w = img.naturalWidth;
    const h = img.naturalHeight;
    const buttons = r.queryFaces.map((face, i) => {
      const b = face.box;
      const button = el(
        "button",
        {
          type: "button",
          class: "face" + (i === r.usedFaceIndex ? " chosen" : ""),
          "aria-pressed": String(i === r.usedFaceIndex),
          "aria-label": `Face ${i + 1} of ${r.queryFaces.length}` + (i === 0 ? " (largest)" : ""),
          title: `Search for face ${i + 1}`,
          onclick: () => {
            if (state.query.faceIndex === i) return;
            state.query.faceIndex = i;
            state.rejected = []; // another face, another person
            drawRejections();
            search();
          },
        },
        el("span", { class: "face-number" }, String(i + 1)),
      );
      button.style.left = `${(100 * b.x1) / w}%`;
      button.style.top = `${(100 * b.y1) / h}%`;
      button.style.width = `${(100 * (b.x2 - b.x1)) / w}%`;
      button.style.height = `${(100 * (b.y2 - b.y1)) / h}%`;
      return button;
    });
    $("faces").replaceChildren(...buttons);
  };
  if (img.complete && img.naturalWidth) place();
  else img.addEventListener("load", place, { once: true });
  const n = r.queryFaces.length;
  $("faces-caption").textContent =
    n === 1 ? "1 face found." : `${n} faces found; searching for face ${r.usedFaceIndex + 1}. Click a face to search for it.`;
}

function clearResults() {
  for (const id of ["videos", "photos", "people"]) $(id).replaceChildren();
  for (const id of ["videos-block", "photos-block", "people-block"]) $(id).hidden = true;
  $("summary").textContent = "";
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const count = (n, one, many) => `${n} ${n === 1 ? one : many}`;

function found(r) {
  const parts = [];
  if (r.videos.length) parts.push(plural(r.videos.length, "video"));
  if (r.images.length) parts.push(plural(r.images.length, "photo"));
  return parts.join(" and ");
}

function drawResults(r) {
  clearResults();
  const threshold = Number(r.minScore).toFixed(2);
  if (!r.matched) {
    $("summary").textContent = `No match: nobody in the index scores ${threshold} or more. Lower the threshold to see closer strangers.`;
    return;
  }
  $("summary").textContent = `${found(r)} at a score of ${threshold} or more.`;
  $("videos").replaceChildren(...r.videos.map((hit) => videoCard(hit)));
  $("photos").replaceChildren(...r.images.map((hit) => photoCard(hit)));
  $("videos-block").hidden = r.videos.length === 0;
  $("photos-block").hidden = r.images.length === 0;
}

// A clip: each person found in it (longest seen first), its best frame, and where else it appears.
function drawClip(r) {
  clearResults();
  const threshold = Number(r.minScore).toFixed(2);
  const matched = r.tracks.filter((t) => t.answer.matched).length;
  $("summary").textContent = `${count(r.tracks.length, "person", "people")} in the clip` +
    `; ${matched} of them found in the index at a score of ${threshold} or more.`;
  const people = r.tracks.map((track, i) => {
    const a = track.answer;
    const where = `${clock(track.startMs)} – ${clock(track.endMs)}`;
    const answer = a.matched
      ? el(
          "div",
          { class: "answer" },
          el("p", { class: "muted" }, `${found(a)}.`),
          a.videos.length ? el("ol", { class: "videos" }, ...a.videos.map((hit) => videoCard(hit))) : null,
          a.images.length ? el("ul", { class: "photos" }, ...a.images.map((hit) => photoCard(hit))) : null,
        )
      : el("p", { class: "muted no-match" }, `No match: nobody in the index scores ${threshold} or more.`);
    return el(
      "li",
      { class: "person", "data-track": String(i) },
      el(
        "figure",
        { class: "person-frame" },
        el("img", {
          src: `/api/clip/${encodeURIComponent(state.query.queryId)}/frames/${i}`,
          alt: `Person ${i + 1} in the clip at ${clock(track.bestTimeMs)}, the face boxed`,
        }),
        el("figcaption", {}, el("strong", {}, `Person ${i + 1}`), ` · ${where} in the clip · ${plural(track.samples, "sample")}`),
      ),
      answer,
    );
  });
  $("people").replaceChildren(...people);
  $("people-block").hidden = people.length === 0;
}

// What a result offers, by where it is shown. `item`: {kind: "face" | "track", id, label, query},
// the query being what "More like this" searches with.
function searchActions(item) {
  return el(
    "div",
    { class: "actions" },
    moreButton(item),
    el(
      "button",
      { type: "button", class: "reject", "aria-label": `Not this person: ${item.label}`, onclick: () => reject({ kind: item.kind, id: item.id, label: item.label }) },
      "Not this person",
    ),
    ...thisIs(item),
  );
}

// In an opened person: picked to be moved to another person.
function personActions(item) {
  return el(
    "div",
    { class: "actions" },
    el("label", { class: "pick-label" }, el("input", { type: "checkbox", class: "pick", "data-unit-id": item.id, "aria-label": `Select ${item.label} to move` }), " Select"),
    moreButton(item),
  );
}

function moreButton(item) {
  return el(
    "button",
    { type: "button", class: "more", "aria-label": `More like this: ${item.label}`, onclick: () => moreLikeThis(item.query) },
    "More like this",
  );
}

function photoCard(hit, offer = searchActions) {
  const name = fileName(hit.uri);
  const query = { faceId: hit.faceId, mediaId: hit.mediaId, timeMs: 0, box: hit.box, label: name };
  return el(
    "li",
    { class: "photo", "data-media-id": hit.mediaId, "data-face-id": hit.faceId },
    el(
      "a",
      { href: `/api/media/${encodeURIComponent(hit.mediaId)}/file`, target: "_blank", rel: "noopener" },
      el("img", { src: frameUrl(hit.mediaId, 0, hit.box, 320), alt: `${name}, the face found boxed`, loading: "lazy" }),
    ),
    el("div", { class: "caption" }, el("span", { class: "name", title: hit.uri }, name), el("span", { class: "score" }, score(hit.score))),
    offer({ kind: "face", id: hit.faceId, label: name, query }),
  );
}

function videoCard(hit, offer = searchActions) {
  const name = fileName(hit.uri);
  const segments = hit.segments;
  // A duration can be unknown (0): the timeline then ends a second after the last match.
  const lastEnd = Math.max(...segments.map((s) => Number(s.endMs)));
  const duration = Number(hit.durationMs) >= lastEnd ? Number(hit.durationMs) : lastEnd + 1000;
  const player = el("div", { class: "player", hidden: true });
  const timeline = el("div", { class: "timeline", role: "group", "aria-label": `Where the person appears in ${name}` });
  // Tracks of several people may overlap in time: each bar in the first lane free at its start.
  const lanes = []; // the end of the last bar in each lane
  const laneOf = segments.map((seg) => {
    let lane = lanes.findIndex((end) => end <= Number(seg.startMs));
    if (lane < 0) lane = lanes.push(0) - 1;
    lanes[lane] = Number(seg.endMs);
    return lane;
  });
  if (lanes.length > 1) timeline.style.height = `${Math.max(1.8, 0.9 * lanes.length)}rem`;
  const bars = segments.map((seg, i) => {
    const start = Number(seg.startMs);
    const end = Number(seg.endMs);
    const button = el("button", {
      type: "button",
      class: "segment",
      "data-start-ms": String(start),
      "data-end-ms": String(end),
      "data-track-id": seg.trackId,
      "aria-label": `${clock(start)} to ${clock(end)}, best score ${score(seg.bestScore)}`,
      title: `${clock(start)} – ${clock(end)} · best ${score(seg.bestScore)} at ${clock(seg.bestTimeMs)}`,
      onclick: () => play(hit, seg, player, timeline, button),
    });
    button.style.left = `${(100 * start) / duration}%`;
    button.style.width = `${(100 * (end - start)) / duration}%`;
    button.style.top = `${(100 * laneOf[i]) / lanes.length}%`;
    button.style.height = `${100 / lanes.length}%`;
    return button;
  });
  timeline.append(...bars);
  // Per segment (one track): its best frame with the face boxed, which plays the track from its start.
  const list = el(
    "ol",
    { class: "segment-list" },
    ...segments.map((seg, i) => {
      const where = `${clock(seg.startMs)} – ${clock(seg.endMs)}`;
      const label = `${name} ${where}`;
      return el(
        "li",
        { class: "segment-item", "data-track-id": seg.trackId, "data-start-ms": String(Number(seg.startMs)) },
        el(
          "button",
          {
            type: "button",
            class: "thumb",
            "aria-label": `Play ${name} from ${clock(seg.startMs)}`,
            title: `Play from ${clock(seg.startMs)}`,
            onclick: () => play(hit, seg, player, timeline, bars[i]),
          },
          el("img", {
            src: frameUrl(hit.mediaId, seg.bestTimeMs, seg.bestBox, 320),
            alt: `Best frame at ${clock(seg.bestTimeMs)}, the face boxed`,
            loading: "lazy",
          }),
        ),
        el(
          "div",
          { class: "segment-info" },
          el("span", { class: "when" }, where),
          // A live stream's segment: when it was on camera.
          ...(hit.stream ? [el("span", { class: "seen-at" }, `seen ${wallClock(seg.startAtMs)} – ${wallClock(seg.endAtMs)}`)] : []),
          el("span", { class: "score" }, `best ${score(seg.bestScore)}`),
          el("span", { class: "muted" }, `at ${clock(seg.bestTimeMs)} · ${seg.matchingSamples} of ${plural(seg.samples, "sample")} match`),
          offer({
            kind: "track",
            id: seg.trackId,
            label,
            query: { trackId: seg.trackId, mediaId: hit.mediaId, timeMs: seg.bestTimeMs, box: seg.bestBox, label },
          }),
        ),
      );
    }),
  );
  return el(
    "li",
    { class: "video", "data-media-id": hit.mediaId, "data-duration-ms": String(duration) },
    el(
      "div",
      { class: "caption" },
      el("span", { class: "name", title: hit.uri }, name),
      el("span", { class: "muted" }, ` ${clock(hit.durationMs)}${hit.stream ? ` · stream ${hit.stream}` : ""}`),
      el("span", { class: "score" }, score(hit.bestScore)),
    ),
    timeline,
    el("div", { class: "ticks", "aria-hidden": "true" }, el("span", {}, "0:00.0"), el("span", {}, clock(duration))),
    list,
    player,
  );
}

// A segment's video from its start, and its best frame with the face boxed.
function play(hit, seg, player, timeline, button) {
  for (const b of timeline.querySelectorAll(".segment")) b.classList.toggle("active", b === button);
  const src = `/api/media/${encodeURIComponent(hit.mediaId)}/file`;
  let video = player.querySelector("video");
  if (!video) {
    video = el("video", { controls: true, preload: "metadata", muted: true, playsInline: true });
    video.addEventListener("error", () => {
      player.querySelector(".play-error").textContent =
        "This browser cannot play this video file; the best frame is shown instead.";
    });
    player.append(video, el("figure", { class: "best" }), el("p", { class: "play-error muted" }));
  }
  if (!video.src.endsWith(src)) video.src = src;
  // Before the metadata is in, this sets where playback will start.
  video.currentTime = Number(seg.startMs) / 1000;
  video.play().catch(() => {}); // refused autoplay: the user presses play
  const best = el("img", {
    src: frameUrl(hit.mediaId, seg.bestTimeMs, seg.bestBox, 640),
    alt: `Best frame of ${fileName(hit.uri)} at ${clock(seg.bestTimeMs)}, the face boxed`,
  });
  player.querySelector("figure.best").replaceChildren(
    best,
    el("figcaption", {}, `Best frame ${clock(seg.bestTimeMs)} · score ${score(seg.bestScore)}`),
  );
  player.hidden = false;
}

// -- ingest status ------------------------------------------------------------------------------

const STATE_NAMES = {
  MEDIA_STATE_QUEUED: "queued",
  MEDIA_STATE_SAMPLING: "sampling",
  MEDIA_STATE_EMBEDDING: "embedding",
  MEDIA_STATE_DONE: "done",
  MEDIA_STATE_FAILED: "failed",
  MEDIA_STATE_DELETED: "deleted",
};

async function refreshStatus() {
  clearTimeout(state.statusTimer);
  let busy = false;
  try {
    const [media] = await listAll("/api/media", "media");
    busy = media.some((m) => ["MEDIA_STATE_QUEUED", "MEDIA_STATE_SAMPLING", "MEDIA_STATE_EMBEDDING"].includes(m.state));
    drawStatus(media);
  } catch (err) {
    if (err.status === 401) return; // the login form is up; refreshed after logging in
    $("status-summary").textContent = `Status unavailable: ${err.message}`;
  }
  // Often while work is in progress, now and then once all is done.
  state.statusTimer = setTimeout(refreshStatus, busy ? 2000 : 10000);
}

function drawStatus(media) {
  const counts = Object.keys(STATE_NAMES)
    .map((s) => [STATE_NAMES[s], media.filter((m) => m.state === s).length])
    .filter(([, n]) => n > 0);
  $("status-summary").textContent = media.length
    ? counts.map(([name, n]) => `${n} ${name}`).join(", ")
    : "Nothing ingested yet: drop photos and videos into the watched folder or bucket.";
  const rows = [...media].reverse().map((m) => {
    const stateName = STATE_NAMES[m.state] || m.state;
    const expected = Math.max(m.framesExpected, m.framesEmbedded);
    const progress = el("progress", {
      max: String(Math.max(expected, 1)),
      value: String(m.state === "MEDIA_STATE_DONE" ? Math.max(expected, 1) : m.framesEmbedded),
      "aria-label": `${fileName(m.uri)}: ${m.framesEmbedded} of ${expected || "?"} frames embedded`,
    });
    return el(
      "li",
      { class: `item ${stateName}`, "data-media-id": m.mediaId },
      el("span", { class: "name", title: m.uri }, fileName(m.uri)),
      el("span", { class: `badge ${stateName}` }, stateName),
      progress,
      el(
        "span",
        { class: "muted counts" },
        `${m.framesEmbedded}/${expected || "?"} frames · ${m.facesFound} face${m.facesFound === 1 ? "" : "s"}`,
      ),
      m.errorReason ? el("span", { class: "error" }, `${m.errorReason}: ${m.errorDetail}`) : null,
    );
  });
  $("status-list").replaceChildren(...rows);
}

async function loadLimits() {
  try {
    state.limits = await api("/api/limits");
  } catch {
    state.limits = null; // the server checks sizes anyway
  }
}

// -- people -------------------------------------------------------------------------------------
// The index's faces and tracks, clustered into people (/api/people): listed with a face of each,
// renamed, merged, opened. An opened person's photos and segments are drawn as a search answer's
// are, and picked ones move to another person. "This is…" on a search result names who is in it.

const personLabel = (p) => p.name || `Unnamed person ${p.personId.slice(-6)}`;
const personPath = (id) => `/api/people/${encodeURIComponent(id)}`;

// A button that opens a small form in its place (rename, "This is…"). `submit(value)` does the
// edit; its error is shown in the form, which stays open. Escape or Cancel closes it.
// `suggest`: the names there are as suggestions (not for a rename: another person's name is taken).
function inlineForm({ text, label, inputLabel, value = "", required = false, suggest = false, submit }) {
  const input = el("input", {
    type: "text",
    value,
    maxlength: "100",
    "aria-label": inputLabel,
    required,
    ...(suggest ? { list: "people-names" } : {}),
  });
  const error = el("p", { class: "error", role: "alert" });
  const open = el("button", { type: "button", class: "open-form", "aria-expanded": "false", "aria-label": label }, text);
  const form = el(
    "form",
    { class: "inline-form", hidden: true },
    input,
    el("button", { type: "submit" }, "Save"),
    el("button", { type: "button", class: "link", onclick: () => toggle(false) }, "Cancel"),
    error,
  );
  const toggle = (shown) => {
    form.hidden = !shown;
    open.setAttribute("aria-expanded", String(shown));
    error.textContent = "";
    (shown ? input : open).focus();
  };
  open.addEventListener("click", () => toggle(form.hidden));
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") toggle(false);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await submit(input.value.trim());
      toggle(false);
    } catch (err) {
      error.textContent = describe(err);
    }
  });
  return [open, form];
}

// "This is <name>": the face (photos) or track (segments) to the person of that name, a new one
// if nobody has it yet.
function thisIs(item) {
  const done = el("span", { class: "muted named", role: "status" });
  const [open, form] = inlineForm({
    text: "This is…",
    label: `This is…: name the person in ${item.label}`,
    inputLabel: `Who is in ${item.label}?`,
    required: true,
    suggest: true,
    submit: async (name) => {
      const person = await postJson("/api/people/move", { unitIds: [item.id], name });
      done.textContent = `This is ${personLabel(person)}.`;
      refreshNames();
    },
  });
  return [open, done, form];
}

// The names there are, as suggestions wherever a name is typed.
async function refreshNames() {
  try {
    const [named] = await listAll("/api/people?named_only=true", "people");
    $("people-names").replaceChildren(...named.map((p) => el("option", { value: p.name })));
  } catch {
    // suggestions only: a name typed in full works without them
  }
}

async function loadPeople() {
  $("people-error").textContent = "";
  try {
    const [people, last] = await listAll("/api/people", "people");
    drawPeople(people, last.unclustered);
  } catch (err) {
    $("people-error").textContent = `People unavailable: ${describe(err)}`;
  }
}

function drawPeople(people, unclustered) {
  const loose = unclustered ? `; ${count(unclustered, "face or track", "faces and tracks")} in nobody yet (searchable all the same)` : "";
  $("people-summary").textContent = people.length
    ? `${count(people.length, "person", "people")}, most faces first${loose}.`
    : `Nobody yet: people appear a few seconds after their photos and videos are ingested${loose}.`;
  $("people-list").replaceChildren(...people.map(personCard));
  updateMerge();
}

function personCard(p) {
  const label = personLabel(p);
  const [open, form] = inlineForm({
    text: "Rename",
    label: `Rename ${label}`,
    inputLabel: `New name for ${label} (empty: unnamed)`,
    value: p.name,
    submit: async (name) => {
      const renamed = await postJson(personPath(p.personId), { name });
      await loadPeople();
      $("people-status").textContent = `${label} is now ${personLabel(renamed)}.`;
      document.querySelector(`.person-card[data-person-id="${p.personId}"] .person-open`)?.focus();
      refreshNames();
    },
  });
  return el(
    "li",
    { class: "person-card", "data-person-id": p.personId },
    el(
      "a",
      { href: `#/people/${encodeURIComponent(p.personId)}`, class: "person-open", "aria-label": `Open ${label}` },
      el("img", { src: frameUrl(p.mediaId, p.timeMs, p.box, 240), alt: `A face of ${label}, boxed`, loading: "lazy" }),
      el("span", { class: "person-name" }, p.name || "Unnamed"),
    ),
    el("span", { class: "muted counts" }, `${plural(p.faces, "face")} in ${count(p.mediaCount, "photo or video", "photos and videos")}`),
    el(
      "div",
      { class: "actions" },
      el("label", { class: "pick-label" }, el("input", { type: "checkbox", class: "pick", "aria-label": `Select ${label} to merge`, onchange: updateMerge }), " Select"),
      open,
    ),
    form,
  );
}

const picked = (root) => [...root.querySelectorAll("input.pick:checked")];

function updateMerge() {
  const n = picked($("people-list")).length;
  $("merge").disabled = n < 2;
  $("merge").textContent = n < 2 ? "Merge selected" : `Merge ${count(n, "person", "people")}`;
}

$("merge").addEventListener("click", async () => {
  const ids = picked($("people-list")).map((box) => box.closest(".person-card").dataset.personId);
  const [into, ...others] = ids; // the list is most faces first: into the largest, keeping its name
  $("people-error").textContent = "";
  try {
    const merged = await postJson(`${personPath(into)}/merge`, { people: others });
    await loadPeople();
    $("people-status").textContent = `Merged ${count(ids.length, "person", "people")} into ${personLabel(merged)}.`;
    refreshNames();
  } catch (err) {
    $("people-error").textContent = `Not merged: ${describe(err)}`;
  }
});
$("people-refresh").addEventListener("click", loadPeople);

async function openPerson(personId) {
  state.person = null;
  $("person-title").textContent = "Person";
  $("person-summary").textContent = "Loading…";
  $("person-error").textContent = "";
  for (const id of ["person-videos-block", "person-photos-block"]) $(id).hidden = true;
  try {
    const { person, answer } = await api(personPath(personId));
    drawPerson(person, answer);
  } catch (err) {
    $("person-summary").textContent = "";
    $("person-error").textContent = describe(err);
  }
}

// The person's photos and segments, drawn by the renderers of a search answer.
function drawPerson(person, answer) {
  state.person = person;
  $("person-title").textContent = personLabel(person);
  $("person-summary").textContent = `${plural(person.faces, "face")}: ${found(answer) || "nothing left in the index"}.`;
  $("person-videos").replaceChildren(...answer.videos.map((hit) => videoCard(hit, personActions)));
  $("person-photos").replaceChildren(...answer.images.map((hit) => photoCard(hit, personActions)));
  $("person-videos-block").hidden = answer.videos.length === 0;
  $("person-photos-block").hidden = answer.images.length === 0;
}

$("person-search").addEventListener("click", () => {
  const p = state.person;
  if (p) moreLikeThis({ personId: p.personId, mediaId: p.mediaId, timeMs: p.timeMs, box: p.box, label: personLabel(p) });
});

// The picked photos and segments to the person of the name typed, or to a new person (a split).
$("move-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const ids = picked($("person-panel")).map((box) => box.dataset.unitId);
  const name = $("move-name").value.trim();
  $("person-error").textContent = "";
  $("person-status").textContent = "";
  if (!ids.length || !state.person) {
    $("person-error").textContent = "Select the photos and segments to move first.";
    return;
  }
  try {
    const to = await postJson("/api/people/move", name ? { unitIds: ids, name } : { unitIds: ids });
    $("move-name").value = "";
    await openPerson(state.person.personId); // an error if nothing of theirs is left
    $("person-status").replaceChildren(
      `Moved ${count(ids.length, "photo or segment", "photos and segments")} to `,
      el("a", { href: `#/people/${encodeURIComponent(to.personId)}` }, personLabel(to)),
      ".",
    );
    refreshNames();
  } catch (err) {
    $("person-error").textContent = `Not moved: ${describe(err)}`;
  }
});

// -- the watch list and its alerts ---------------------------------------------------------------

// A JPEG of an answer (base64) as a blob: URL, which the page's CSP allows; revoked once not shown.
const jpegUrl = (base64) =>
  URL.createObjectURL(new Blob([Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))], { type: "image/jpeg" }));
const forget = (list) => list.querySelectorAll("img").forEach((img) => URL.revokeObjectURL(img.src));

async function loadWatches() {
  try {
    const listed = await api("/api/watches");
    drawWatches(listed.watches);
  } catch (err) {
    $("watch-error").textContent = `Cannot list the watch list: ${describe(err)}`;
  }
}

function drawWatches(watches) {
  forget($("watch-list"));
  $("watch-list").replaceChildren(
    ...watches.map((w) => {
      const kind = w.kind === "WATCH_KIND_MUTE" ? "mute" : "alert";
      const threshold = w.threshold === undefined ? "the model's threshold" : `threshold ${score(w.threshold)}`;
      const remove = el("button", { type: "button", class: "link", onclick: () => deleteWatch(w) }, "Delete");
      return el(
        "li",
        { class: "watch", "data-watch-id": w.watchId },
        el("img", { src: jpegUrl(w.thumbnail), alt: `${w.name}'s face`, width: 64, height: 64 }),
        el("span", { class: "watch-name" }, w.name),
        el("span", { class: "muted" }, ` ${kind}, ${threshold}, ${w.photos} photo(s) `),
        remove,
      );
    }),
  );
  if (!watches.length) $("watch-list").append(el("li", { class: "muted" }, "Nobody is on the watch list."));
}

const base64Of = (file) =>
  new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });

async function addWatch(event) {
  event.preventDefault();
  $("watch-error").textContent = "";
  $("watch-status").textContent = "Adding…";
  const body = {
    name: $("watch-name").value,
    kind: $("watch-kind").value,
    images: await Promise.all([...$("watch-photos").files].map(base64Of)),
  };
  if ($("watch-threshold").value !== "") body.threshold = Number($("watch-threshold").value);
  try {
    const watch = await postJson("/api/watches", body);
    $("watch-status").textContent = `${watch.name} is on the watch list.`;
    $("watch-form").reset();
    loadWatches();
  } catch (err) {
    $("watch-status").textContent = "";
    $("watch-error").textContent = describe(err);
  }
}

async function deleteWatch(watch) {
  $("watch-error").textContent = "";
  try {
    await api(`/api/watches/${encodeURIComponent(watch.watchId)}`, { method: "DELETE" });
    $("watch-status").textContent = `${watch.name} is off the watch list.`;
    loadWatches();
  } catch (err) {
    $("watch-error").textContent = describe(err);
  }
}

// The live panel polls /api/alerts: first the last hour's, then each new one once (by the seq the
// server answers), newest on top; at most 200 shown.
const alerts = { next: "", since: 0, timer: null, shown: new Set() };

async function pollAlerts() {
  clearTimeout(alerts.timer);
  try {
    const query = alerts.next ? `after=${alerts.next}` : `since_ms=${Date.now() - 3600 * 1000}`;
    const page = await api(`/api/alerts?${query}&limit=200`);
    alerts.next = page.next;
    for (const a of page.alerts) drawAlert(a);
  } catch (err) {
    if (err.status !== 401) $("alerts-summary").textContent = `Alerts unavailable: ${describe(err)}`;
  }
  alerts.timer = setTimeout(pollAlerts, 2000);
}

function drawAlert(a) {
  if (alerts.shown.has(a.alertId)) return;
  alerts.shown.add(a.alertId);
  const who = a.kind === "ALERT_KIND_UNKNOWN" ? "Unknown person" : a.name;
  const seen = new Date(Number(a.seenAtMs || a.raisedAtMs)).toLocaleString();
  const where = a.uri ? `${fileName(a.uri)} at ${clock(a.timeMs)}` : clock(a.timeMs);
  const item = el(
    "li",
    { class: "alert", "data-alert-id": a.alertId },
    a.still ? el("img", { src: jpegUrl(a.still), alt: `${who}, as seen`, width: 96 }) : null,
    el("strong", {}, who),
    el("span", {}, ` score ${score(a.score)} · ${a.source} · ${where} · ${seen}`),
  );
  $("alerts-list").prepend(item);
  while ($("alerts-list").children.length > 200) {
    forget($("alerts-list").lastElementChild);
    $("alerts-list").lastElementChild.remove();
  }
}

$("watch-form").addEventListener("submit", addWatch);

// The view of the address: #/ (search), #/people, #/people/{personId}, #/watch.
function route() {
  const hash = location.hash;
  const personId = hash.startsWith("#/people/") ? decodeURIComponent(hash.slice("#/people/".length)) : null;
  const people = personId !== null || hash === "#/people";
  const watch = hash === "#/watch";
  $("search-view").hidden = people || watch;
  $("people-view").hidden = !people;
  $("watch-view").hidden = !watch;
  $("people-panel").hidden = personId !== null;
  $("person-panel").hidden = personId === null;
  if (watch) {
    $("watch-title").focus();
    loadWatches();
  }
  for (const [id, current] of [["nav-search", !people && !watch], ["nav-people", people], ["nav-watch", watch]]) {
    if (current) $(id).setAttribute("aria-current", "page");
    else $(id).removeAttribute("aria-current");
  }
  if (personId !== null) {
    $("person-status").textContent = "";
    $("person-title").focus();
    openPerson(personId);
  } else if (people) {
    $("people-status").textContent = "";
    $("people-title").focus();
    loadPeople();
  }
}

api("/api/session").then((session) => {
  $("logout").hidden = !session.authRequired;
});
window.addEventListener("hashchange", route);
loadLimits();
refreshStatus();
refreshNames();
pollAlerts();
route();
