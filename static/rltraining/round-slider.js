// The evaluation gallery's round slider says which round it is on to screen readers (its
// value is an index into the evaluated rounds); htmx fetches that round's samples.
const slider = document.getElementById("round-slider");
if (slider) {
  const rounds = slider.dataset.rounds.split(",");
  slider.addEventListener("input", () => slider.setAttribute("aria-valuetext", `round ${rounds[slider.value]}`));
}
