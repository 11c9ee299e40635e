// The console works without this script; it only helps: a matrix cell is clickable as a whole,
// and a running audit verification shows its progress without reloading the page.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const cell of document.querySelectorAll("td.cell")) {
    const target = cell.querySelector("a");
    if (target) {
      cell.addEventListener("click", (event) => {
        if (event.target !== target) target.click();
      });
    }
  }

  const run = document.querySelector(".audit-run[data-progress]");
  if (run && run.querySelector(".running")) {
    const bar = run.querySelector("progress");
    const checked = run.querySelector(".checked");
    const poll = async () => {
      const answer = await fetch(run.dataset.progress, { credentials: "same-origin" });
      if (!answer.ok) return;
      const state = await answer.json();
      bar.max = Math.max(state.total, 1);
      bar.value = state.checked;
      checked.textContent = String(state.checked);
      if (state.running) {
        setTimeout(poll, 400);
      } else {
        window.location.reload();
      }
    };
    setTimeout(poll, 400);
  }
});
