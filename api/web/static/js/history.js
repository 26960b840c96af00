// The caller's recent jobs (GET /api/jobs, newest first, paged by `nextCursor`); each reopens into a card.

import { get } from "./api.js";
import { h, fill } from "./dom.js";
import { STATUS_LABELS, fullTime, jobTitle, when } from "./format.js";

const PAGE_SIZE = 8;

export class History {
  constructor({ list, more, empty, refresh, onOpen }) {
    Object.assign(this, { list, more, empty, onOpen });
    this.cursor = null;
    more.addEventListener("click", () => this.load({ append: true }));
    refresh.addEventListener("click", () => this.load());
  }

  async load({ append = false } = {}) {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (append && this.cursor) params.set("cursor", this.cursor);
    let page;
    try {
      page = await get(`/api/jobs?${params}`);
    } catch (err) {
      this.empty.textContent = `Could not load your jobs: ${err.message}`;
      this.empty.hidden = false;
      return;
    }
    const rows = page.data.map((job) => this.row(job));
    if (append) this.list.append(...rows);
    else fill(this.list, rows);
    this.cursor = page.nextCursor ?? null;
    this.more.hidden = !this.cursor;
    this.empty.textContent = "No jobs yet. Your first one will show up here.";
    this.empty.hidden = this.list.children.length > 0;
  }

  /** Forget the listed jobs (sign-out). */
  clear() {
    fill(this.list);
    this.cursor = null;
    this.more.hidden = true;
    this.empty.hidden = true;
  }

  row(job) {
    return h("li", {},
      h("button", { type: "button", class: "history-item", dataset: { jobId: job.jobId },
        "aria-label": `Open ${jobTitle(job.mode, job.variant)}: ${job.topic} (${STATUS_LABELS[job.status]}, ${when(job.createdAt)})`,
        onclick: () => this.onOpen(job.jobId) },
      h("span", { class: "history-main" },
        h("span", { class: "history-topic" }, job.topic),
        h("span", { class: "history-sub" }, jobTitle(job.mode, job.variant))),
      h("span", { class: "history-time", title: fullTime(job.createdAt) }, when(job.createdAt)),
      h("span", { class: "badge", dataset: { status: job.status } }, STATUS_LABELS[job.status] ?? job.status)));
  }
}
