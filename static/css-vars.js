// CSS custom properties a page computes (a heat map's value, a win rate) arrive as
// data-css-var="--name:value" attributes and are set here: the Content-Security-Policy allows
// no inline style attribute, and setting a property from a script file is not one.
function applyCssVars(root) {
  for (const element of root.querySelectorAll("[data-css-var]")) {
    const [name, value] = element.dataset.cssVar.split(":");
    element.style.setProperty(name.trim(), value.trim());
  }
}
applyCssVars(document);
document.addEventListener("htmx:afterSwap", (event) => applyCssVars(event.target));
