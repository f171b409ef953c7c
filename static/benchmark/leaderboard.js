// The leaderboard (no framework): sortable columns, each part (this installation's runs, the
// paper's rows) sorted on its own so they never interleave; switches for the published rows
// and the task-group columns; "compare two rows".
for (const select of document.querySelectorAll("[data-submit-on-change]")) {
  select.addEventListener("change", () => select.form.submit());
}
const table = document.getElementById("leaderboard");
if (table) {
  table.querySelectorAll("thead th").forEach((th, column) => {
    if (!th.dataset.sort) return;
    th.addEventListener("click", () => {
      const descending = !th.classList.contains("desc");
      table.querySelectorAll("thead th").forEach((h) => h.classList.remove("asc", "desc"));
      th.classList.add(descending ? "desc" : "asc");
      const numeric = th.dataset.sort === "num";
      const value = (row) => {
        const raw = row.cells[column].dataset.value ?? row.cells[column].textContent;
        return numeric ? parseFloat(raw) : raw.toLowerCase();
      };
      for (const body of table.tBodies) {
        const rows = [...body.rows].filter((row) => !row.classList.contains("section"));
        rows.sort((a, b) => {
          const x = value(a), y = value(b);
          const order = numeric ? x - y : x.localeCompare(y);
          return descending ? -order : order;
        });
        rows.forEach((row) => body.appendChild(row));
      }
    });
  });
  const toggle = (id, className, whenChecked) => {
    const box = document.getElementById(id);
    const apply = () => table.classList.toggle(className, box.checked === whenChecked);
    box.addEventListener("change", apply);
    apply();
  };
  toggle("show-reported", "hide-reported", false);
  toggle("show-groups", "show-groups", true);
  const button = document.getElementById("compare-button");
  const hint = document.getElementById("compare-hint");
  const picked = () => [...table.querySelectorAll("input.pick:checked")].map((i) => i.value);
  table.addEventListener("change", () => {
    const n = picked().length;
    button.disabled = n !== 2;
    hint.textContent = n === 2 ? "" : n > 2 ? "tick only two rows" : `tick ${2 - n} more row${n === 1 ? "" : "s"}`;
  });
  button.addEventListener("click", () => {
    const [a, b] = picked();
    window.location = `compare/?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`;
  });
}
