// Compare viewer: a candidate against its source, in four modes, with one zoom
// and pan shared by every pane (so the grid of source + all candidates moves as
// one): swipe slider, flicker, difference heatmap, and all side by side.

const MODES = ["swipe", "flicker", "diff", "grid"];

export class CompareViewer {
  constructor(root, sourceUrl, candidates) {
    this.root = root;
    this.body = root.querySelector("#compare-body");
    this.title = root.querySelector("#compare-title");
    this.sourceUrl = sourceUrl;
    this.candidates = candidates;
    this.mode = "swipe";
    this.view = { scale: 1, x: 0, y: 0 };
    this.flickerHandle = null;
    for (const b of root.querySelectorAll("[data-mode]")) {
      b.onclick = () => this.setMode(b.dataset.mode);
    }
    this.body.onwheel = (e) => this.#zoom(e);
    this.body.onpointerdown = (e) => this.#panStart(e);
  }

  get isOpen() {
    return !this.root.hidden;
  }

  open(candidateId) {
    this.index = Math.max(0, this.candidates.findIndex((c) => c.id === candidateId));
    this.root.hidden = false;
    this.render();
  }

  close() {
    this.root.hidden = true;
    clearInterval(this.flickerHandle);
    this.body.replaceChildren();
  }

  setMode(mode) {
    this.mode = mode;
    this.render();
  }

  onKey(e) {
    const k = e.key;
    if (k === "Escape" || k === "z" || k === "Z") this.close();
    else if (k === "ArrowRight") this.#step(1);
    else if (k === "ArrowLeft") this.#step(-1);
    else if (/^[1-4]$/.test(k)) this.setMode(MODES[Number(k) - 1]);
    else if (k === "0") this.#setView({ scale: 1, x: 0, y: 0 });
    else if (k === "+" || k === "=") this.#setView({ ...this.view, scale: this.view.scale * 1.25 });
    else if (k === "-") this.#setView({ ...this.view, scale: Math.max(1, this.view.scale / 1.25) });
    else return;
    e.preventDefault();
  }

  #step(d) {
    this.index = (this.index + d + this.candidates.length) % this.candidates.length;
    this.render();
  }

  get candidate() {
    return this.candidates[this.index];
  }

  render() {
    clearInterval(this.flickerHandle);
    for (const b of this.root.querySelectorAll("[data-mode]")) b.setAttribute("aria-selected", String(b.dataset.mode === this.mode));
    this.title.textContent = this.mode === "grid" ? "source and every candidate" : `source ↔ candidate ${this.candidate.letter}`;
    this.body.dataset.mode = this.mode;
    this.body.replaceChildren(this.#build());
    this.#applyView();
  }

  #build() {
    if (this.mode === "grid") {
      const grid = document.createElement("div");
      grid.className = "compare-grid";
      grid.append(this.#pane(this.sourceUrl, "Source"), ...this.candidates.map((c) => this.#pane(c.image_url, c.letter)));
      return grid;
    }
    const pane = document.createElement("div");
    pane.className = "pane big";
    const stack = document.createElement("div");
    stack.className = "zoomable";
    const src = this.#img(this.sourceUrl, "source");
    const cand = this.#img(this.candidate.image_url, `candidate ${this.candidate.letter}`);
    cand.classList.add("top");
    stack.append(src, cand);
    pane.append(stack);
    if (this.mode === "swipe") {
      const slider = document.createElement("input");
      slider.type = "range";
      slider.min = "0";
      slider.max = "100";
      slider.value = "50";
      slider.className = "swipe-slider";
      slider.setAttribute("aria-label", "swipe position");
      const apply = () => (cand.style.clipPath = `inset(0 0 0 ${slider.value}%)`);
      slider.oninput = apply;
      apply();
      const labels = document.createElement("div");
      labels.className = "swipe-labels";
      labels.innerHTML = `<span>source</span><span>candidate ${this.candidate.letter}</span>`;
      pane.append(slider, labels);
    } else if (this.mode === "flicker") {
      let showCandidate = true;
      const label = document.createElement("div");
      label.className = "flicker-label";
      const tick = () => {
        cand.style.visibility = showCandidate ? "visible" : "hidden";
        label.textContent = showCandidate ? `candidate ${this.candidate.letter}` : "source";
        showCandidate = !showCandidate;
      };
      tick();
      this.flickerHandle = setInterval(tick, 500);
      pane.append(label);
    } else if (this.mode === "diff") {
      const canvas = document.createElement("canvas");
      canvas.className = "top heat";
      stack.replaceChildren(canvas);
      this.#heatmap(canvas);
      const legend = document.createElement("div");
      legend.className = "flicker-label";
      legend.textContent = "difference: black = unchanged, red → yellow = changed";
      pane.append(legend);
    }
    return pane;
  }

  #pane(url, label) {
    const pane = document.createElement("figure");
    pane.className = "pane";
    const stack = document.createElement("div");
    stack.className = "zoomable";
    stack.append(this.#img(url, label));
    const caption = document.createElement("figcaption");
    caption.textContent = label;
    pane.append(stack, caption);
    return pane;
  }

  #img(url, alt) {
    const img = document.createElement("img");
    img.src = url;
    img.alt = alt;
    img.draggable = false;
    return img;
  }

  async #heatmap(canvas) {
    const load = (url) =>
      new Promise((resolve, reject) => {
        const img = new Image();
        img.onload = () => resolve(img);
        img.onerror = reject;
        img.src = url;
      });
    const [a, b] = await Promise.all([load(this.sourceUrl), load(this.candidate.image_url)]);
    // The candidate is compared at the source's size, as the benchmark scores it.
    const w = a.naturalWidth;
    const h = a.naturalHeight;
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(a, 0, 0, w, h);
    const pa = ctx.getImageData(0, 0, w, h).data;
    ctx.drawImage(b, 0, 0, w, h);
    const out = ctx.getImageData(0, 0, w, h);
    const pb = out.data;
    for (let i = 0; i < pa.length; i += 4) {
      const d = (Math.abs(pa[i] - pb[i]) + Math.abs(pa[i + 1] - pb[i + 1]) + Math.abs(pa[i + 2] - pb[i + 2])) / 3;
      const t = Math.min(1, d / 96); // 0 black, then red, then yellow
      pb[i] = Math.round(255 * Math.min(1, t * 2));
      pb[i + 1] = Math.round(255 * Math.max(0, t * 2 - 1));
      pb[i + 2] = 0;
      pb[i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
  }

  // --- one zoom/pan for every pane

  #setView(v) {
    this.view = v;
    this.#applyView();
  }

  #applyView() {
    const { scale, x, y } = this.view;
    for (const z of this.body.querySelectorAll(".zoomable")) z.style.transform = `translate(${x}px, ${y}px) scale(${scale})`;
  }

  #zoom(e) {
    e.preventDefault();
    const factor = e.deltaY < 0 ? 1.15 : 1 / 1.15;
    const scale = Math.min(16, Math.max(1, this.view.scale * factor));
    const pane = e.target.closest(".pane");
    if (!pane) return;
    const r = pane.getBoundingClientRect();
    // keep the point under the cursor fixed
    const cx = e.clientX - r.left;
    const cy = e.clientY - r.top;
    const k = scale / this.view.scale;
    this.#setView({ scale, x: cx - k * (cx - this.view.x), y: cy - k * (cy - this.view.y) });
  }

  #panStart(e) {
    if (e.target.closest(".swipe-slider") || !e.target.closest(".pane")) return;
    const start = { x: e.clientX, y: e.clientY, view: { ...this.view } };
    const move = (ev) => this.#setView({ ...start.view, x: start.view.x + ev.clientX - start.x, y: start.view.y + ev.clientY - start.y });
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }
}
