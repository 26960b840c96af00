// Batches on the page: the form's batch switch (one topic per line × the ticked pipelines × the
// ticked shapes, sent as one `POST /api/batches`) and the group that holds a batch's job cards.

import { post } from "./api.js";
import { h, icon, announce } from "./dom.js";
import { STATUS_LABELS, TERMINAL } from "./format.js";

const ORDER = ["running", "queued", "completed", "failed", "cancelled"];

/** The form's batch controls; `on` only in generate mode with the switch on. */
export class BatchOptions {
  constructor(form) {
    this.form = form;
    this.$ = (id) => document.getElementById(id);
    this.topicHint = this.$("topic-hint").textContent;
  }

  get on() { return this.form.elements.mode.value === "generate" && this.$("batch").checked; }

  ticked(name) { return [...this.form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value); }

  topics() { return this.$("topic").value.split("\n").map((t) => t.trim()).filter(Boolean); }

  /** The batch's checkboxes stand in for the single pipeline and shape; say how many videos it makes. */
  sync() {
    const on = this.on;
    this.$("batch-choices").hidden = !on;
    this.$("variant-field").hidden = on;
    this.$("aspect").closest("fieldset").hidden = on;
    const topic = this.$("topic");
    topic.maxLength = on ? 20 * 501 : 500; // the server checks each topic, and how many videos there are
    topic.rows = on ? 4 : 2;
    this.$("topic-hint").textContent = on
      ? "One topic per line: each gets a video in every pipeline and aspect ratio ticked below."
      : this.topicHint;
    const count = this.topics().length * this.ticked("batchVariant").length * this.ticked("batchAspect").length;
    this.$("batch-count").textContent = on ? `${count} video${count === 1 ? "" : "s"} in this batch.` : "";
    return on;
  }

  /** Only the pipelines the workers offer can be ticked. */
  applyCapabilities(offered) {
    for (const input of this.form.querySelectorAll('input[name="batchVariant"]')) {
      input.disabled = !offered.includes(input.value);
      if (input.disabled) input.checked = false;
    }
  }

  /** `POST /api/batches` for a generate body: its topic lines × the ticked pipelines and shapes. */
  request(body) {
    const { topic, variant, ...common } = body;
    if (common.options) {
      const { aspectRatio, ...options } = common.options;
      common.options = options;
    }
    return ["/api/batches", {
      topics: this.topics(), variants: this.ticked("batchVariant"), aspectRatios: this.ticked("batchAspect"), common,
    }];
  }
}

/** A 422 of `POST /api/batches` as the form's fields name it: `common.x` is field x, `topics.i` the topic box. */
export function formErrors(details) {
  return details.map((detail) => {
    const [where, field, ...rest] = detail.loc;
    if (where !== "body") return detail;
    if (field === "common") return { ...detail, loc: ["body", ...rest] };
    if (field === "topics") {
      const msg = typeof rest[0] === "number" ? `Topic ${rest[0] + 1}: ${detail.msg}` : detail.msg;
      return { ...detail, loc: ["body", "topic"], msg };
    }
    return detail;
  });
}

/** What each job of a product batch renders, in the order of its `jobIds` (topic, then pipeline, then shape). */
export function jobHints(request) {
  const { topics, variants, aspectRatios } = request;
  return topics.flatMap((topic) => variants.flatMap((variant) => aspectRatios.map(() => ({ mode: "generate", variant, topic }))));
}

/** The cards of one batch under a common header: how many jobs are in each state, and a cancel for all. */
export class BatchGroup {
  constructor(board, accepted) {
    this.board = board;
    this.id = accepted.batchId;
    this.cards = new Set();
    const titleId = `batch-title-${this.id}`;
    const count = accepted.jobIds.length;
    this.summary = h("p", { class: "batch-summary", role: "status" });
    this.cancelButton = h("button", { type: "button", class: "btn btn-small btn-danger", onclick: () => this.cancel() },
      icon("stop"), "Cancel batch");
    this.list = h("div", { class: "batch-cards" });
    this.el = h("section", { class: "batch", "aria-labelledby": titleId, dataset: { batchId: this.id } },
      h("header", { class: "batch-head" },
        h("h3", { class: "batch-title", id: titleId }, `Batch of ${count} video${count === 1 ? "" : "s"}`),
        this.cancelButton,
        h("p", { class: "job-meta" }, h("span", { class: "mono" }, this.id)),
        this.summary),
      this.list);
  }

  add(card) {
    card.group = this;
    this.cards.add(card);
    this.list.append(card.el);
    this.update();
  }

  /** A card of the batch changed: count its jobs by state again. */
  update() {
    const counts = {};
    for (const card of this.cards) {
      const state = card.status?.status ?? "queued";
      counts[state] = (counts[state] ?? 0) + 1;
    }
    this.summary.textContent = ORDER.filter((s) => counts[s]).map((s) => `${counts[s]} ${STATUS_LABELS[s].toLowerCase()}`).join(" · ");
    this.el.dataset.status = ORDER.find((s) => counts[s] && !TERMINAL.has(s)) ?? "ended";
    this.cancelButton.hidden = this.el.dataset.status === "ended";
  }

  async cancel() {
    this.cancelButton.disabled = true;
    try {
      await post(`/api/batches/${encodeURIComponent(this.id)}/cancel`);
      announce("Cancelling the batch.");
    } catch (err) {
      this.summary.textContent = `Could not cancel the batch: ${err.message}`;
    } finally {
      this.cancelButton.disabled = false;
    }
  }

  /** A card left the group (closed or deleted); the group goes when its last card does. */
  remove(card) {
    this.cards.delete(card);
    if (this.cards.size === 0) {
      this.el.remove();
      this.board.groups.delete(this.id);
    } else {
      this.update();
    }
  }
}
