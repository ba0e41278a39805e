// Keyboard navigation of the control room (issue 16): "/" focuses the page's search box; in a table whose
// rows open something (tr.clickable), "j" / "k" move a highlight down / up and Enter opens the highlighted
// row. Keys typed into inputs, text areas and selects are left alone.
(function () {
  if (window.__lakehouseKeys) return;
  window.__lakehouseKeys = true;
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  const rows = () => Array.from(document.querySelectorAll("table tbody tr.clickable"));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(document.activeElement)) return;
    if (event.key === "/") {
      const search = document.querySelector("[data-search-box] input, input[data-search-box]");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
      return;
    }
    if (event.key !== "j" && event.key !== "k" && event.key !== "Enter") return;
    const all = rows();
    if (!all.length) return;
    let at = all.findIndex((row) => row.classList.contains("row-focused"));
    if (event.key === "Enter") {
      if (at < 0) return;
      event.preventDefault();
      const link = all[at].querySelector("a.run-link, a[href]");
      if (link) link.click(); else all[at].click();
      return;
    }
    event.preventDefault();
    at = event.key === "j" ? Math.min(at + 1, all.length - 1) : Math.max(at - 1, 0);
    all.forEach((row) => row.classList.remove("row-focused"));
    all[at].classList.add("row-focused");
    all[at].scrollIntoView({ block: "nearest" });
  });
})();
