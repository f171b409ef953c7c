// Tier-board state: for each dimension, ordered tiers (ties share a tier) and an
// "unusable" floor. The DOM is always re-rendered from this state, so drag and
// drop, keyboard moves and a restored autosave all go through one path.

export const UNPLACED = "unplaced";
export const FLOOR = "unusable";
const MIN_TIERS = 2;

export class TierRanking {
  constructor(candidateIds, dimensionKeys, saved) {
    this.ids = [...candidateIds];
    this.dims = {};
    for (const key of dimensionKeys) {
      const s = saved && saved[key];
      this.dims[key] = s ? this.#sanitize(s) : { tiers: [[], []], floor: [] };
    }
  }

  // Keep only known candidates, each once; drop nothing the user placed.
  #sanitize(s) {
    const seen = new Set();
    const keep = (list) => (Array.isArray(list) ? list : []).filter((id) => this.ids.includes(id) && !seen.has(id) && seen.add(id));
    const tiers = (Array.isArray(s.tiers) ? s.tiers : []).map(keep);
    while (tiers.length < MIN_TIERS) tiers.push([]);
    return { tiers, floor: keep(s.floor) };
  }

  placeOf(dim, id) {
    const d = this.dims[dim];
    if (d.floor.includes(id)) return FLOOR;
    const i = d.tiers.findIndex((t) => t.includes(id));
    return i === -1 ? UNPLACED : i;
  }

  unplaced(dim) {
    return this.ids.filter((id) => this.placeOf(dim, id) === UNPLACED);
  }

  // where: a tier index (0 = best), FLOOR or UNPLACED; position: index inside it.
  move(dim, id, where, position = Infinity) {
    const d = this.dims[dim];
    d.tiers = d.tiers.map((t) => t.filter((x) => x !== id));
    d.floor = d.floor.filter((x) => x !== id);
    if (where === FLOOR) d.floor.splice(position, 0, id);
    else if (where !== UNPLACED) {
      while (d.tiers.length <= where) d.tiers.push([]);
      d.tiers[where].splice(position, 0, id);
    }
  }

  addTier(dim) {
    this.dims[dim].tiers.push([]);
  }

  // Empty tiers in the middle close up; keep at least MIN_TIERS and one empty at the end
  // only while something is unplaced.
  compact(dim) {
    const d = this.dims[dim];
    const filled = d.tiers.filter((t) => t.length);
    const extra = Math.max(MIN_TIERS - filled.length, this.unplaced(dim).length ? 1 : 0);
    d.tiers = [...filled, ...Array.from({ length: extra }, () => [])];
  }

  copyFrom(fromDim, toDim) {
    const src = this.dims[fromDim];
    this.dims[toDim] = { tiers: src.tiers.map((t) => [...t]), floor: [...src.floor] };
    this.compact(toDim);
  }

  isDimComplete(dim) {
    return this.unplaced(dim).length === 0;
  }

  missing() {
    return Object.keys(this.dims).filter((dim) => !this.isDimComplete(dim));
  }

  snapshot() {
    return JSON.parse(JSON.stringify(this.dims));
  }

  // The API payload: non-empty tiers best first, and the floor per dimension.
  payload() {
    const tiers = {};
    const unusable = {};
    for (const [dim, d] of Object.entries(this.dims)) {
      tiers[dim] = d.tiers.filter((t) => t.length).map((t) => [...t]);
      if (d.floor.length) unusable[dim] = [...d.floor];
    }
    return { tiers, unusable };
  }
}
