// The ranking page: renders the tier board of the current dimension, handles
// mouse (SortableJS) and keyboard, autosaves to localStorage, submits through
// the JSON API (retrying with the same submission id), then swaps in the next
// group with htmx.

import { FLOOR, TierRanking, UNPLACED } from "./board.js";
import { CompareViewer } from "./compare.js";

const page = document.getElementById("rank-page");
const csrfToken = () => JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"];
const letters = "ABCDEFGH";

function uuid4() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16)); // works outside secure contexts too
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

class RankSession {
  constructor(data) {
    this.group = data.group;
    this.dimensions = data.dimensions;
    // mode: "rank", "adjudication" or "revision" (a revision starts from the ranking it revises)
    this.mode = data.mode || "rank";
    // A revision's draft belongs to that ranking's version (a group's ranking and its repeat
    // are two rankings; a version, once replaced, is never revised again).
    const suffix = { rank: "", adjudication: ":adjudication", revision: `:revision:${data.revision}` }[this.mode];
    this.storageKey = `editloop:v1:${data.user}:${this.group.id}${suffix}`;
    const saved = this.#load();
    this.candidates = this.group.candidates.map((c, i) => ({ ...c, letter: letters[i] }));
    const placements = (saved && saved.placements) || this.group.initial;
    this.ranking = new TierRanking(this.candidates.map((c) => c.id), this.dimensions.map((d) => d.key), placements);
    this.submissionId = (saved && saved.submissionId) || uuid4();
    this.elapsed = (saved && saved.elapsed) || 0;
    this.dimIndex = Math.min((saved && saved.dimIndex) || 0, this.dimensions.length - 1);
    this.focusId = this.candidates[0].id;
    this.sortables = [];
    this.busy = false;
    this.compare = new CompareViewer(document.getElementById("compare"), this.group.source_url, this.candidates);
    this.#renderTabs();
    this.render();
    this.#save();
    this.#startTimer();
  }

  get dim() {
    return this.dimensions[this.dimIndex].key;
  }

  #load() {
    try {
      return JSON.parse(localStorage.getItem(this.storageKey));
    } catch {
      return null;
    }
  }

  #save() {
    const state = { placements: this.ranking.snapshot(), submissionId: this.submissionId, elapsed: this.elapsed, dimIndex: this.dimIndex };
    try {
      localStorage.setItem(this.storageKey, JSON.stringify(state));
    } catch {
      /* storage full or disabled: the ranking still works, it just won't survive a reload */
    }
  }

  #startTimer() {
    const timer = document.getElementById("timer");
    let last = performance.now();
    this.timerHandle = setInterval(() => {
      const now = performance.now();
      if (!document.hidden) this.elapsed += (now - last) / 1000;
      last = now;
      const s = Math.floor(this.elapsed);
      timer.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
      if (s % 5 === 0) this.#save();
    }, 1000);
  }

  destroy() {
    clearInterval(this.timerHandle);
    this.sortables.forEach((s) => s.destroy());
    this.compare.close();
  }

  // --- rendering

  #renderTabs() {
    const tabs = document.getElementById("dim-tabs");
    tabs.replaceChildren(
      ...this.dimensions.map((d, i) => {
        const b = document.createElement("button");
        b.type = "button";
        b.role = "tab";
        b.dataset.dim = d.key;
        b.textContent = d.label;
        b.addEventListener("click", () => this.setDim(i));
        return b;
      }),
    );
  }

  #updateTabs() {
    for (const b of document.querySelectorAll("#dim-tabs button")) {
      const i = this.dimensions.findIndex((d) => d.key === b.dataset.dim);
      b.setAttribute("aria-selected", String(i === this.dimIndex));
      b.classList.toggle("complete", this.ranking.isDimComplete(b.dataset.dim));
    }
    const missing = this.ranking.missing();
    const submit = document.getElementById("submit-button");
    submit.disabled = missing.length > 0 || this.busy;
  }

  #card(c) {
    const card = document.createElement("div");
    card.className = "cand";
    card.dataset.id = c.id;
    card.tabIndex = -1;
    card.setAttribute("aria-label", `candidate ${c.letter}`);
    const img = document.createElement("img");
    img.src = c.thumb_url;
    img.alt = `candidate ${c.letter}`;
    img.draggable = false;
    const tag = document.createElement("span");
    tag.className = "letter";
    tag.textContent = c.letter;
    card.append(img, tag);
    card.addEventListener("click", () => this.focus(c.id));
    card.addEventListener("dblclick", () => this.compare.open(c.id));
    return card;
  }

  #zone(kind, title, ids, index) {
    const zone = document.createElement("div");
    zone.className = `zone ${kind}`;
    zone.dataset.where = index === undefined ? kind : String(index);
    const label = document.createElement("div");
    label.className = "zone-label";
    label.textContent = title;
    const list = document.createElement("div");
    list.className = "zone-list";
    for (const id of ids) list.append(this.#card(this.candidates.find((c) => c.id === id)));
    zone.append(label, list);
    return zone;
  }

  render() {
    const dim = this.dim;
    const d = this.ranking.dims[dim];
    const meta = this.dimensions[this.dimIndex];
    const board = document.getElementById("board");
    const rubric = document.createElement("p");
    rubric.className = "rubric";
    rubric.textContent = meta.rubric;
    rubric.title = meta.rubric;
    rubric.classList.toggle("open", Boolean(this.rubricOpen));
    rubric.addEventListener("click", () => {
      this.rubricOpen = !this.rubricOpen;
      rubric.classList.toggle("open", this.rubricOpen);
      fitToWindow(this.candidates.length);
    });
    const zones = [
      this.#zone(UNPLACED, "Unplaced", this.ranking.unplaced(dim)),
      ...d.tiers.map((ids, i) => this.#zone("tier", i === 0 ? "Tier 1 · best" : `Tier ${i + 1}`, ids, i)),
    ];
    const floor = this.#zone(FLOOR, "Unusable · fails outright (below every tier)", d.floor);
    board.replaceChildren(rubric, ...zones, floor);
    board.dataset.dim = dim;
    board.dataset.group = this.group.id;
    this.sortables.forEach((s) => s.destroy());
    this.sortables = [...board.querySelectorAll(".zone-list")].map(
      (list) =>
        new Sortable(list, {
          group: `dim-${dim}`,
          animation: 120,
          draggable: ".cand",
          emptyInsertThreshold: 24, // an empty row takes a card dropped near it
          onEnd: (evt) => {
            const where = this.#whereOf(evt.to);
            this.ranking.move(dim, evt.item.dataset.id, where, evt.newDraggableIndex ?? evt.newIndex);
            this.focusId = evt.item.dataset.id;
            this.#changed();
          },
        }),
    );
    this.#updateTabs();
    fitToWindow(this.candidates.length);
    this.#applyFocus();
  }

  #whereOf(list) {
    const w = list.closest(".zone").dataset.where;
    return w === UNPLACED || w === FLOOR ? w : Number(w);
  }

  #changed() {
    if (!this.ranking.unplaced(this.dim).length) this.ranking.compact(this.dim);
    this.render();
    this.#save();
    this.message("");
  }

  #applyFocus() {
    const card = document.querySelector(`#board .cand[data-id="${CSS.escape(this.focusId)}"]`);
    document.querySelectorAll("#board .cand.focused").forEach((c) => c.classList.remove("focused"));
    if (card) {
      card.classList.add("focused");
      card.focus({ preventScroll: false });
    }
  }

  focus(id) {
    this.focusId = id;
    this.#applyFocus();
  }

  addTier() {
    this.ranking.addTier(this.dim);
    this.#changed();
  }

  setDim(i) {
    this.dimIndex = (i + this.dimensions.length) % this.dimensions.length;
    const unplaced = this.ranking.unplaced(this.dim);
    if (unplaced.length) this.focusId = unplaced[0]; // pick up where work remains
    this.render();
    this.#save();
  }

  message(text, kind = "") {
    const m = document.getElementById("message");
    m.textContent = text;
    m.className = kind || "muted";
  }

  // --- keyboard

  moveFocus(step) {
    const order = [...document.querySelectorAll("#board .cand")].map((c) => c.dataset.id);
    const i = order.indexOf(this.focusId);
    this.focus(order[(i + step + order.length) % order.length]);
  }

  // After a keyboard placement, focus jumps to the next unplaced candidate, so
  // ranking a board is a run of digit presses.
  placeFocused(where) {
    this.ranking.move(this.dim, this.focusId, where);
    const next = this.ranking.unplaced(this.dim)[0];
    if (where !== UNPLACED && next) this.focusId = next;
    this.#changed();
  }

  onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (this.compare.isOpen) return this.compare.onKey(e);
    const help = document.getElementById("help");
    if (!help.hidden) {
      if (e.key === "Escape" || e.key === "?") help.hidden = true;
      e.preventDefault();
      return;
    }
    const k = e.key;
    if (k === "ArrowRight" || k === "ArrowDown") this.moveFocus(1);
    else if (k === "ArrowLeft" || k === "ArrowUp") this.moveFocus(-1);
    else if (/^[1-9]$/.test(k)) this.placeFocused(Number(k) - 1);
    else if (k === "0" || k === "u" || k === "U") this.placeFocused(FLOOR);
    else if (k === "Backspace" || k === "Delete") this.placeFocused(UNPLACED);
    else if (k === "Tab") this.setDim(this.dimIndex + (e.shiftKey ? -1 : 1));
    else if (k === "Enter") this.submit();
    else if (k === "s" || k === "S") this.skip();
    else if (k === "z" || k === "Z") this.compare.open(this.focusId);
    else if (k === "c" || k === "C") this.copyPrevious();
    else if (k === "?") help.hidden = false;
    else return;
    e.preventDefault();
  }

  copyPrevious() {
    if (this.dimIndex === 0) return this.message("The first dimension has nothing to copy from.");
    this.ranking.copyFrom(this.dimensions[this.dimIndex - 1].key, this.dim);
    this.#changed();
  }

  // --- server

  async submit() {
    const missing = this.ranking.missing();
    if (missing.length) {
      const labels = missing.map((k) => this.dimensions.find((d) => d.key === k).label);
      return this.message(`Place every candidate in: ${labels.join(", ")}`, "warn");
    }
    if (this.busy) return;
    this.busy = true;
    this.#updateTabs();
    this.message("Submitting…");
    const body = JSON.stringify({ submission_id: this.submissionId, ...this.ranking.payload(), seconds_spent: Math.round(this.elapsed * 10) / 10 });
    // Retries reuse the submission id, so a request that reached the server
    // before the connection dropped is stored once.
    for (let attempt = 0; attempt < 6; attempt++) {
      let response;
      try {
        response = await fetch(this.group.submit_url || `/api/groups/${this.group.id}/rankings/`, {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
          credentials: "same-origin",
          body,
        });
      } catch {
        this.message(`Connection lost; retrying (${attempt + 1})…`, "warn");
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
        continue;
      }
      // A 409 on a first ranking: this group is ranked already (a retry that got through)
      if (response.ok || (response.status === 409 && this.mode === "rank")) {
        clearInterval(this.timerHandle); // its autosave must not write the draft back
        localStorage.removeItem(this.storageKey);
        const count = Number(sessionStorage.getItem("editloop:session-count") || 0) + 1;
        sessionStorage.setItem("editloop:session-count", String(count));
        if (this.group.done_url) return window.location.assign(this.group.done_url);
        return loadNext();
      }
      const detail = await response.json().catch(() => ({}));
      this.busy = false;
      this.#updateTabs();
      return this.message(detail.detail || `The server refused the ranking (HTTP ${response.status}).`, "error");
    }
    this.busy = false;
    this.#updateTabs();
    this.message("Could not reach the server. Your placements are saved in this browser; press Enter to try again.", "error");
  }

  async skip() {
    if (this.busy || this.group.skip_url === null) return; // adjudication: nothing to skip
    this.busy = true;
    const response = await fetch(`/api/groups/${this.group.id}/skip/`, {
      method: "POST",
      headers: { "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
    }).catch(() => null);
    if (!response || !response.ok) {
      this.busy = false;
      return this.message("Skip failed; try again.", "error");
    }
    clearInterval(this.timerHandle);
    localStorage.removeItem(this.storageKey);
    loadNext();
  }
}

// The task fits the window: the stage takes the height below it, and the candidate cards are as
// large as the rows allow (the edit is what is judged), each row holding every candidate in one
// line, or two when that gives larger cards.
const ZONE_CHROME = 10; // a row's padding and borders, px (rank.css)
const GAP = 5;
const LABEL = 6.5 * 16 + GAP; // the row label's width

function fitToWindow(count) {
  const stage = document.querySelector(".stage");
  const board = document.getElementById("board");
  if (!stage || !board) return;
  const height = Math.max(320, window.innerHeight - stage.getBoundingClientRect().top - 10);
  stage.style.setProperty("--stage-height", `${Math.floor(height)}px`);
  const zones = board.querySelectorAll(".zone").length;
  const fixed = [...board.children].filter((el) => !el.classList.contains("zone")).reduce((h, el) => h + el.offsetHeight, 0);
  const perZone = (board.clientHeight - fixed - GAP * (board.children.length - 1)) / zones;
  const width = board.clientWidth - LABEL - ZONE_CHROME;
  let card = 48;
  for (const lines of [1, 2]) {
    const byHeight = (perZone - ZONE_CHROME - GAP * (lines - 1)) / lines;
    const perLine = Math.ceil(count / lines);
    const byWidth = (width - GAP * (perLine - 1)) / perLine;
    card = Math.max(card, Math.min(byHeight, byWidth));
  }
  board.style.setProperty("--card", `${Math.floor(Math.min(card, 320))}px`);
}

window.addEventListener("resize", () => session && fitToWindow(session.candidates.length));

let session = null;

function start() {
  const data = document.getElementById("board-data");
  document.getElementById("session-count").textContent = sessionStorage.getItem("editloop:session-count") || "0";
  if (session) session.destroy();
  session = data ? new RankSession(JSON.parse(data.textContent)) : null;
}

function loadNext() {
  htmx.ajax("GET", page.dataset.workspaceUrl, { target: "#workspace", swap: "outerHTML" });
}

document.addEventListener("keydown", (e) => {
  if (e.target.matches && e.target.matches("input, textarea, select")) return;
  if (session) session.onKey(e);
  else if (e.key === "?") document.getElementById("help").hidden = false;
});
// The only htmx swap on this page is the workspace: a new group arrives. Keys
// pressed while it is in flight must not reach the old group's board.
document.addEventListener("htmx:beforeSwap", (e) => {
  if (!e.detail.shouldSwap) {
    if (session) {
      session.busy = false;
      session.message("Could not load the next group; press Enter or reload to try again.", "error");
    }
    return;
  }
  if (session) session.destroy();
  session = null;
});
document.addEventListener("htmx:afterSwap", start);
document.getElementById("help-button").addEventListener("click", () => (document.getElementById("help").hidden = false));
for (const close of document.querySelectorAll("[data-close]")) {
  close.addEventListener("click", () => {
    close.closest(".overlay").hidden = true;
    if (session) session.compare.close();
  });
}
page.addEventListener("click", (e) => {
  if (!session) return;
  if (e.target.id === "submit-button") session.submit();
  else if (e.target.id === "skip-button") session.skip();
  else if (e.target.id === "compare-button") session.compare.open(session.focusId);
  else if (e.target.id === "add-tier") session.addTier();
  else if (e.target.id === "source-image") session.compare.open(session.focusId);
});
start();
