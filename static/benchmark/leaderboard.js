// Sortable columns and "compare two rows" for the leaderboard (no framework).
const table = document.getElementById("leaderboard");
if (table) {
  table.querySelectorAll("thead th[data-sort]").forEach((th, column) => {
    th.addEventListener("click", () => {
      const descending = !th.classList.contains("desc");
      table.querySelectorAll("thead th").forEach((h) => h.classList.remove("asc", "desc"));
      th.classList.add(descending ? "desc" : "asc");
      const numeric = th.dataset.sort === "num";
      const body = table.tBodies[0];
      const rows = [...body.rows];
      const value = (row) => {
        const raw = row.cells[column].dataset.value ?? row.cells[column].textContent;
        return numeric ? parseFloat(raw) : raw.toLowerCase();
      };
      rows.sort((a, b) => {
        const x = value(a), y = value(b);
        const order = numeric ? x - y : x.localeCompare(y);
        return descending ? -order : order;
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
  const button = document.getElementById("compare-button");
  const picked = () => [...table.querySelectorAll("input.pick:checked")].map((i) => i.value);
  table.addEventListener("change", () => (button.disabled = picked().length !== 2));
  button.addEventListener("click", () => {
    const [a, b] = picked();
    window.location = `compare/?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`;
  });
}
