// Wires the page: capabilities and profiles into the form, submissions and history into cards.

import { get } from "./api.js";
import { Board } from "./cards.js";
import { announce } from "./dom.js";
import { JobForm } from "./form.js";
import { History } from "./history.js";

const $ = (id) => document.getElementById(id);

const history = new History({
  list: $("history-list"), more: $("history-more"), empty: $("history-empty"), refresh: $("history-refresh"),
  onOpen: (jobId) => board.open(jobId, { focus: true }),
});

const board = new Board($("cards"), {
  onFinished: (card) => {
    history.load();
    if (card.record && card.record.mode !== "generate") form.loadProfiles();
  },
});

const form = new JobForm($("job-form"), {
  onSubmitted: (jobId, body) => {
    board.open(jobId, { hint: body });
    announce("Job started. Its progress is shown under Your jobs.");
    history.load();
  },
});

async function loadCapabilities() {
  const pill = $("workers");
  const text = pill.querySelector(".workers-text");
  try {
    const caps = await get("/api/capabilities");
    form.applyCapabilities(caps);
    if (caps.gpu) {
      pill.dataset.state = "ok";
      text.textContent = `${caps.gpu.workers} GPU worker${caps.gpu.workers === 1 ? "" : "s"} ready`;
    } else {
      pill.dataset.state = "down";
      text.textContent = "No GPU worker online";
    }
  } catch (err) {
    form.applyCapabilities(null);
    pill.dataset.state = "down";
    text.textContent = err.status === 503 ? "Service unavailable" : "Workers unknown";
  }
}

loadCapabilities();
form.loadProfiles();
history.load();
