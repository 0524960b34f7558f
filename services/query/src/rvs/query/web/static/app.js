// The rvs search page: upload a photo, pick a face, move the threshold, browse the hits.
// The photo is sent once; the server keeps its faces under a query id, so a new threshold, face
// or filter is a GET /api/search/{queryId} with no upload. Answers are SearchResponse in the
// proto's canonical JSON (int64 fields arrive as strings).

const $ = (id) => document.getElementById(id);

const state = {
  file: null, // the query photo, kept to search again if the server forgot the query
  queryId: null,
  faceIndex: 0,
  result: null,
  statusTimer: null,
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
    refreshStatus();
  } catch (err) {
    $("login-error").textContent = err.message;
  }
});

$("logout").addEventListener("click", async () => {
  await api("/api/session", { method: "DELETE" });
  location.reload();
});

// -- query photo: file picker, drag and drop, paste ---------------------------------------------

$("file").addEventListener("change", () => {
  if ($("file").files.length) startSearch($("file").files[0]);
});

const drop = $("drop");
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
  const file = [...event.dataTransfer.files].find((f) => f.type.startsWith("image/"));
  if (file) startSearch(file);
});
document.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((i) => i.kind === "file" && i.type.startsWith("image/"));
  if (item) startSearch(item.getAsFile());
});

function options() {
  const params = new URLSearchParams({ kinds: $("kinds").value, face_index: String(state.faceIndex) });
  if (state.result) params.set("min_score", $("threshold").value);
  return params;
}

async function startSearch(file) {
  state.file = file;
  state.queryId = null;
  state.result = null;
  state.faceIndex = 0;
  const img = $("query-img");
  if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file);
  $("query-figure").hidden = false;
  $("faces").replaceChildren();
  $("faces-caption").textContent = "";
  await upload();
}

async function upload() {
  $("query-error").textContent = "";
  $("query-status").textContent = "Looking for faces and searching…";
  try {
    const answer = await api(`/api/search?${options()}`, {
      method: "POST",
      headers: { "content-type": state.file.type || "application/octet-stream" },
      body: state.file,
    });
    show(answer);
  } catch (err) {
    failed(err);
  }
}

// Another threshold, face or filter: the server searches again with the faces it kept.
async function searchAgain() {
  if (!state.queryId) return;
  $("query-error").textContent = "";
  try {
    show(await api(`/api/search/${encodeURIComponent(state.queryId)}?${options()}`));
  } catch (err) {
    if (err.reason === "QUERY_EXPIRED") await upload();
    else failed(err);
  }
}

function failed(err) {
  $("query-status").textContent = "";
  $("query-error").textContent = err.reason ? `${err.message} (${err.reason})` : err.message;
  if (err.reason === "NO_FACE" || err.reason === "DECODE_ERROR") clearResults();
}

const searchSoon = debounce(searchAgain, 150);
$("threshold").addEventListener("input", () => {
  $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
  searchSoon();
});
$("kinds").addEventListener("change", searchAgain);

// -- results ------------------------------------------------------------------------------------

function show(answer) {
  state.queryId = answer.queryId;
  state.result = answer.result;
  const r = answer.result;
  state.faceIndex = r.usedFaceIndex;
  $("query-status").textContent = `Model ${r.model}.`;
  $("threshold").disabled = false;
  $("kinds").disabled = false;
  $("threshold").value = Number(r.minScore).toFixed(2);
  $("threshold-value").textContent = Number(r.minScore).toFixed(2);
  drawFaces(r);
  drawResults(r);
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
            if (state.faceIndex === i) return;
            state.faceIndex = i;
            searchAgain();
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
  $("videos").replaceChildren();
  $("photos").replaceChildren();
  $("videos-block").hidden = true;
  $("photos-block").hidden = true;
  $("summary").textContent = "";
}

function drawResults(r) {
  clearResults();
  const threshold = Number(r.minScore).toFixed(2);
  if (!r.matched) {
    $("summary").textContent = `No match: nobody in the index scores ${threshold} or more. Lower the threshold to see closer strangers.`;
    return;
  }
  const parts = [];
  if (r.videos.length) parts.push(`${r.videos.length} video${r.videos.length === 1 ? "" : "s"}`);
  if (r.images.length) parts.push(`${r.images.length} photo${r.images.length === 1 ? "" : "s"}`);
  $("summary").textContent = `${parts.join(" and ")} at a score of ${threshold} or more.`;
  $("videos").replaceChildren(...r.videos.map(videoCard));
  $("photos").replaceChildren(...r.images.map(photoCard));
  $("videos-block").hidden = r.videos.length === 0;
  $("photos-block").hidden = r.images.length === 0;
}

function photoCard(hit) {
  const name = fileName(hit.uri);
  return el(
    "li",
    { class: "photo", "data-media-id": hit.mediaId },
    el(
      "a",
      { href: `/api/media/${encodeURIComponent(hit.mediaId)}/file`, target: "_blank", rel: "noopener" },
      el("img", { src: frameUrl(hit.mediaId, 0, hit.box, 320), alt: `${name}, the face found boxed`, loading: "lazy" }),
    ),
    el("div", { class: "caption" }, el("span", { class: "name", title: hit.uri }, name), el("span", { class: "score" }, score(hit.score))),
  );
}

function videoCard(hit) {
  const name = fileName(hit.uri);
  const segments = hit.segments;
  // A duration can be unknown (0): the timeline then ends a second after the last match.
  const lastEnd = Math.max(...segments.map((s) => Number(s.endMs)));
  const duration = Number(hit.durationMs) >= lastEnd ? Number(hit.durationMs) : lastEnd + 1000;
  const player = el("div", { class: "player", hidden: true });
  const timeline = el("div", { class: "timeline", role: "group", "aria-label": `Where the person appears in ${name}` });
  for (const seg of segments) {
    const start = Number(seg.startMs);
    const end = Number(seg.endMs);
    const button = el("button", {
      type: "button",
      class: "segment",
      "data-start-ms": String(start),
      "data-end-ms": String(end),
      "aria-label": `${clock(start)} to ${clock(end)}, best score ${score(seg.bestScore)}`,
      title: `${clock(start)} – ${clock(end)} · best ${score(seg.bestScore)} at ${clock(seg.bestTimeMs)}`,
      onclick: () => play(hit, seg, player, timeline, button),
    });
    button.style.left = `${(100 * start) / duration}%`;
    button.style.width = `${(100 * (end - start)) / duration}%`;
    timeline.append(button);
  }
  const list = el(
    "ul",
    { class: "segment-list" },
    ...segments.map((seg) =>
      el("li", {}, `${clock(seg.startMs)} – ${clock(seg.endMs)}`, el("span", { class: "score" }, ` best ${score(seg.bestScore)}`)),
    ),
  );
  return el(
    "li",
    { class: "video", "data-media-id": hit.mediaId, "data-duration-ms": String(duration) },
    el(
      "div",
      { class: "caption" },
      el("span", { class: "name", title: hit.uri }, name),
      el("span", { class: "muted" }, ` ${clock(hit.durationMs)}`),
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
    const media = [];
    let token = "";
    do {
      const page = await api(`/api/media?page_size=1000&page_token=${token}`);
      media.push(...page.media);
      token = page.nextPageToken;
    } while (token);
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

api("/api/session").then((session) => {
  $("logout").hidden = !session.authRequired;
});
refreshStatus();
