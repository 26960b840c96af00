// Job cards: the record from GET /api/jobs/{id}, live node states from the WebSocket
// /ws/jobs/{id} (the server pushes every change; the page never polls), then the video.

import { get, post, del, jobSocketUrl, reportUnauthorized, HttpError } from "./api.js";
import { BatchGroup } from "./batches.js";
import { confirmAction } from "./dialog.js";
import { h, fill, icon, announce } from "./dom.js";
import {
  STAGE_LABELS, STATUS_LABELS, TERMINAL, artifactLabel, bytes, captionFormat, elapsed, fullTime, jobTitle, nodeLabel, seconds,
  when,
} from "./format.js";
import { ReviewPanel } from "./review.js";
import { STAGE_TITLES, renderingEntries, runtimeLabel } from "./runtimes.js";

const NODE_STATE_ICONS = { completed: "check", failed: "cross", cancelled: "dash", skipped: "dash" };
const ARTIFACT_ORDER = ["video", "captions", "audio", "thumbnail", "scene", "base_clip"];
const GPU_WEIGHT = 20; // GPU steps take nearly all the time; CPU steps take milliseconds

export class Board {
  constructor(container, { onFinished, onDeleted }) {
    this.container = container;
    this.onFinished = onFinished;
    this.onDeleted = onDeleted;
    this.cards = new Map();
    this.groups = new Map();
  }

  /** Show the job's card (creating it if needed, inside `group` for a batch's job) and bring it into view. */
  open(jobId, { hint = null, focus = false, group = null } = {}) {
    let card = this.cards.get(jobId);
    if (card) {
      card.el.classList.remove("flash");
      void card.el.offsetWidth; // restart the animation
      card.el.classList.add("flash");
    } else {
      card = new JobCard(this, jobId, hint);
      this.cards.set(jobId, card);
      if (group) group.add(card);
      else this.container.prepend(card.el);
    }
    card.el.scrollIntoView({ behavior: matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth", block: "nearest" });
    if (focus) card.titleEl.focus({ preventScroll: true });
    return card;
  }

  /** A new batch: its jobs' cards, in its order, under one group (`hints[i]` describes job i). */
  openBatch(accepted, hints = []) {
    const group = new BatchGroup(this, accepted);
    this.groups.set(group.id, group);
    this.container.prepend(group.el);
    accepted.jobIds.forEach((jobId, i) => this.open(jobId, { hint: hints[i] ?? null, group }));
    group.el.scrollIntoView({ block: "nearest" });
    return group;
  }

  close(card) {
    card.group?.remove(card);
    card.dispose();
    card.el.remove();
    this.cards.delete(card.id);
    document.getElementById("jobs-heading").focus();
  }

  /** The job is gone on the server: drop its card and tell whoever lists jobs. */
  deleted(card) {
    this.close(card);
    announce("Job deleted.");
    this.onDeleted?.(card.id);
  }

  /** Close every card without moving focus (sign-out: the next user sees none of them). */
  clear() {
    for (const card of this.cards.values()) {
      card.dispose();
      card.el.remove();
    }
    this.cards.clear();
    for (const group of this.groups.values()) group.el.remove();
    this.groups.clear();
  }
}

class JobCard {
  constructor(board, jobId, hint) {
    this.board = board;
    this.id = jobId;
    this.record = null;
    this.status = null;
    this.finished = false;
    this.retries = 0;
    this.rows = new Map();
    this.build(hint);
    this.load();
    this.connect();
  }

  build(hint) {
    const titleId = `title-${this.id}`;
    this.titleEl = h("h3", { class: "job-title", id: titleId, tabindex: "-1" },
      hint ? jobTitle(hint.mode, hint.variant) : "Loading job…");
    this.badge = h("span", { class: "badge", dataset: { status: "queued" } }, STATUS_LABELS.queued);
    this.topicEl = h("p", { class: "job-topic" }, hint?.topic ?? "");
    this.metaEl = h("p", { class: "job-meta" });
    const closeBtn = h("button", { type: "button", class: "icon-btn", "aria-label": `Close the card of ${this.id}`,
      title: "Close card (the job keeps running)", onclick: () => this.board.close(this) }, icon("close"));
    this.overallBar = h("span");
    this.overallText = h("span", { class: "overall-text" });
    this.overall = h("div", { class: "overall" },
      h("div", { class: "bar", role: "progressbar", "aria-label": "Overall progress", "aria-valuemin": "0", "aria-valuemax": "100" }, this.overallBar),
      this.overallText);
    this.nodesEl = h("ol", { class: "nodes", "aria-label": "Steps" });
    this.review = new ReviewPanel(this.id, { notice: (text) => this.notice(text) });
    this.errorEl = h("div", { class: "job-error", role: "alert", hidden: true });
    this.resultEl = h("div", { class: "player", hidden: true });
    this.noticeEl = h("p", { class: "job-notice", role: "status" });
    this.actions = h("div", { class: "job-actions", style: { display: "contents" } });
    this.temporalLink = h("a", { class: "temporal-link", target: "_blank", rel: "noopener", hidden: true },
      icon("external"), "Run in Temporal");
    this.el = h("article", { class: "job", "aria-labelledby": titleId, dataset: { jobId: this.id, status: "queued" } },
      h("header", { class: "job-head" },
        this.titleEl,
        h("div", { class: "job-head-right" }, this.badge, closeBtn),
        this.topicEl, this.metaEl),
      h("div", { class: "job-body" }, this.overall, this.nodesEl, this.review.el, this.errorEl, this.resultEl),
      h("footer", { class: "job-foot" }, this.actions, h("span", { class: "spacer" }), this.noticeEl, this.temporalLink));
    this.renderActions();
  }

  async load() {
    try {
      this.record = await get(`/api/jobs/${encodeURIComponent(this.id)}`);
    } catch (err) {
      if (err instanceof HttpError && err.status === 404) this.notice(`Job ${this.id} was not found.`);
      else this.notice(`Could not load the job: ${err.message}`);
      return;
    }
    this.renderHead();
    if (!this.status) this.renderNodes(this.record.graph.nodes.map((n) => ({ ...n, state: "pending", attempt: 0 })));
    if (TERMINAL.has(this.record.status) && this.finished) this.renderResult();
  }

  // ---------- live updates ----------

  connect() {
    clearTimeout(this.timer);
    const socket = new WebSocket(jobSocketUrl(this.id));
    this.socket = socket;
    socket.addEventListener("message", (event) => {
      this.retries = 0;
      this.notice("");
      this.apply(JSON.parse(event.data));
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket || this.disposed) return;
      this.socket = null;
      if (event.code === 1000) return; // the final state was sent
      if (event.code === 4404) {
        this.notice(event.reason || "This job no longer exists.");
        return;
      }
      if (event.code === 4401) {
        this.notice("Sign in again to follow this job.");
        reportUnauthorized();
        return;
      }
      if (this.status && TERMINAL.has(this.status.status)) return;
      const delay = Math.min(15000, 1000 * 2 ** this.retries);
      this.retries += 1;
      this.notice("Live updates interrupted; reconnecting…");
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }

  apply(status) {
    const previous = this.status?.status;
    this.status = status;
    this.el.dataset.status = status.status;
    this.badge.dataset.status = status.status;
    this.badge.textContent = STATUS_LABELS[status.status] ?? status.status;
    this.renderNodes(status.nodes);
    const waiting = status.status === "running" && status.nodes.some((n) => n.state === "waiting");
    this.review.update(waiting).catch((err) => this.notice(`Could not load the script: ${err.message}`));
    this.renderOverall();
    this.renderError();
    this.renderActions();
    this.group?.update();
    if (TERMINAL.has(status.status) && !this.finished) {
      this.finished = true;
      this.finish(previous);
    }
  }

  async finish(previous) {
    try {
      this.record = await get(`/api/jobs/${encodeURIComponent(this.id)}`);
      this.renderHead();
    } catch {
      // Keep what the stream showed; the result area stays empty.
    }
    this.renderResult();
    if (previous) announce(`${this.titleEl.textContent}: ${STATUS_LABELS[this.status.status].toLowerCase()}.`);
    this.board.onFinished?.(this);
  }

  // ---------- rendering ----------

  renderHead() {
    const r = this.record;
    this.titleEl.textContent = jobTitle(r.mode, r.variant, r.rendering);
    this.topicEl.textContent = r.topic;
    const profile = r.profile ? `Profile: ${r.profile.name}` : r.mode === "generate" ? "Built-in presenter" : "New profile";
    fill(this.metaEl,
      h("span", {}, profile),
      h("span", { class: "sep", title: fullTime(r.createdAt) }, `Started ${when(r.createdAt)}`),
      h("span", { class: "sep mono" }, r.jobId));
    if (r.temporalUiUrl) {
      this.temporalLink.href = r.temporalUiUrl;
      this.temporalLink.hidden = false;
    }
  }

  renderNodes(nodes) {
    const order = nodes.map((n) => n.id).join(",");
    if (order !== this.order) {
      this.order = order;
      this.rows.clear();
      fill(this.nodesEl, nodes.map((n) => this.nodeRow(n)));
    }
    for (const node of nodes) this.updateRow(node);
  }

  nodeRow(node) {
    const row = {
      iconEl: h("span", { class: "node-icon", "aria-hidden": "true" }),
      stateEl: h("span", { class: "node-state" }),
      barEl: h("span"),
      errorEl: h("p", { class: "node-error", hidden: true }),
    };
    row.bar = h("div", { class: "bar", role: "progressbar", "aria-label": `${nodeLabel(node.id)} progress`,
      "aria-valuemin": "0", "aria-valuemax": "100", hidden: true }, row.barEl);
    row.el = h("li", { class: "node", dataset: { node: node.id } },
      row.iconEl,
      h("span", { class: "node-name" }, h("span", { class: "node-label" }, nodeLabel(node.id)),
        h("span", { class: "node-task" }, node.task)),
      row.stateEl, row.bar, row.errorEl);
    this.rows.set(node.id, row);
    return row.el;
  }

  updateRow(node) {
    const row = this.rows.get(node.id);
    row.el.dataset.state = node.state;
    const glyph = NODE_STATE_ICONS[node.state];
    if (row.glyph !== glyph) {
      row.glyph = glyph;
      fill(row.iconEl, glyph ? icon(glyph) : null);
    }
    const percent = nodePercent(node);
    const live = node.state === "running" || node.state === "retrying";
    row.bar.hidden = !(live && percent !== null);
    row.barEl.style.width = `${percent ?? 0}%`;
    row.bar.setAttribute("aria-valuenow", String(Math.round(percent ?? 0)));
    fill(row.stateEl, nodeStateText(node), node.attempt > 1 ? h("span", { class: "attempt" }, `attempt ${node.attempt}`) : null);
    const error = node.error?.message;
    row.errorEl.hidden = !error;
    row.errorEl.textContent = error ? (node.state === "retrying" ? `Last attempt: ${error}` : error) : "";
  }

  renderOverall() {
    const s = this.status;
    let total = 0;
    let done = 0;
    for (const node of s.nodes) {
      if (node.state === "skipped") continue;
      const weight = node.plane === "gpu" ? GPU_WEIGHT : 1;
      total += weight;
      done += weight * ((node.state === "completed" ? 100 : nodePercent(node) ?? 0) / 100);
    }
    const pct = s.status === "completed" ? 100 : total ? Math.min(99, (done / total) * 100) : 0;
    this.overallBar.style.width = `${pct}%`;
    this.overall.querySelector(".bar").setAttribute("aria-valuenow", String(Math.round(pct)));
    const took = elapsed(s.startedAt, s.finishedAt);
    this.overallText.textContent = TERMINAL.has(s.status)
      ? `${s.status === "completed" ? "Finished" : "Ended"} after ${seconds(took)}`
      : s.status === "queued" ? "Waiting for a worker…"
        : s.nodes.some((n) => n.state === "waiting") ? "Waiting for your review of the script"
          : `${Math.round(pct)}% · ${seconds(took)}`;
  }

  renderError() {
    const s = this.status;
    if (s.status === "failed") {
      const stage = s.error?.stage;
      fill(this.errorEl,
        h("strong", {}, stage ? `Failed at “${nodeLabel(stage)}” (${stage})` : "The job failed"),
        h("span", {}, s.error?.message ?? "No reason was recorded."));
      this.errorEl.className = "job-error";
      this.errorEl.hidden = false;
    } else if (s.status === "cancelled") {
      const why = s.error?.stage === "review" ? `${s.error.message}. ` : "";
      fill(this.errorEl, h("strong", {}, "Cancelled"), h("span", {}, `${why}Steps that never ran are marked skipped.`));
      this.errorEl.className = "job-error cancelled";
      this.errorEl.hidden = false;
    } else {
      this.errorEl.hidden = true;
    }
  }

  renderResult() {
    const r = this.record;
    if (!r) return;
    const artifacts = [...(r.artifacts ?? [])].sort((a, b) => rank(a) - rank(b));
    const thumb = artifacts.find((a) => a.kind === "thumbnail" && !a.partial);
    const parts = [];
    if (r.video && this.status?.status === "completed") {
      parts.push(h("video", {
        src: r.video.url, poster: thumb?.url, controls: true, preload: "auto", playsinline: true,
        "aria-label": `Video: ${r.topic}`,
      }));
    }
    if (artifacts.length) {
      parts.push(h("div", { class: "downloads", role: "group", "aria-label": "Downloads" },
        artifacts.map((a) => h("a", { class: `download${a.partial ? " partial" : a.kind === "video" ? " primary" : ""}`, href: a.url, download: "",
          title: a.partial ? "Partial output of the failed run" : a.contentType ?? "" },
        icon("download"), `${artifactLabel(a)}${a.partial ? " (partial)" : ""}`,
        a.sizeBytes ? h("span", { class: "size" }, bytes(a.sizeBytes)) : null))));
    }
    const ran = renderingEntries(r.rendering);
    if (ran.length) parts.push(whatRan(ran));
    if (r.scriptSummary) parts.push(h("blockquote", { class: "script-summary" }, r.scriptSummary));
    fill(this.resultEl, parts);
    this.resultEl.hidden = parts.length === 0;
  }

  renderActions() {
    const state = this.status?.status ?? this.record?.status ?? "queued";
    const buttons = [];
    if (state === "queued" || state === "running") {
      buttons.push(this.button("Cancel", "stop", "btn-danger", () => this.cancel()));
    }
    if (state === "failed") buttons.push(this.button("Retry", "retry", "", () => this.retry()));
    if (TERMINAL.has(state)) {
      buttons.push(this.button("Resubmit", "copy", "", () => this.resubmit()));
      buttons.push(this.button("Delete", "trash", "btn-danger", (btn) => this.remove(btn)));
    }
    const key = buttons.map((b) => b.dataset.action).join(",");
    if (key !== this.actionsKey) {
      this.actionsKey = key;
      fill(this.actions, buttons);
    }
  }

  button(label, glyph, cls, handler) {
    const btn = h("button", { type: "button", class: `btn btn-small ${cls}`, dataset: { action: label.toLowerCase() } },
      icon(glyph), label);
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      try {
        await handler(btn);
      } catch (err) {
        this.notice(err.message);
      } finally {
        btn.disabled = false;
      }
    });
    return btn;
  }

  async cancel() {
    await post(`/api/jobs/${encodeURIComponent(this.id)}/cancel`);
    this.notice("Cancelling…");
  }

  async retry() {
    await post(`/api/jobs/${encodeURIComponent(this.id)}/retry`);
    this.finished = false;
    this.resultEl.hidden = true;
    this.notice("Retrying from the failed step…");
    this.connect();
  }

  async resubmit() {
    const accepted = await post(`/api/jobs/${encodeURIComponent(this.id)}/resubmit`);
    const hint = this.record ? { mode: this.record.mode, variant: this.record.variant, topic: this.record.topic } : null;
    this.board.open(accepted.jobId, { hint, focus: true });
    announce("Resubmitted as a new job.");
  }

  async remove(opener) {
    const topic = this.record?.topic ?? this.topicEl.textContent;
    const ok = await confirmAction({
      title: "Delete this job?",
      message: `${topic ? `“${topic}”: its` : "Its"} video, downloads and every file it made are deleted for good.`,
      confirm: "Delete job",
      // The card may re-render its buttons while the dialog is open (a status update).
      opener: () => this.actions.querySelector('[data-action="delete"]') ?? (opener.isConnected ? opener : this.titleEl),
    });
    if (!ok) return;
    try {
      await del(`/api/jobs/${encodeURIComponent(this.id)}`);
    } catch (err) {
      if (err.status === 405) throw new Error("This server cannot delete jobs yet.");
      throw err;
    }
    this.board.deleted(this);
  }

  notice(text) {
    this.noticeEl.textContent = text;
  }

  dispose() {
    this.disposed = true;
    clearTimeout(this.timer);
    this.socket?.close(1000);
  }
}

function nodePercent(node) {
  if (node.state === "completed") return 100;
  const p = node.progress?.percent;
  return typeof p === "number" ? Math.max(0, Math.min(100, p)) : null;
}

function nodeStateText(node) {
  const p = node.progress ?? {};
  switch (node.state) {
    case "pending": return "Waiting";
    case "waiting": return "Waiting for you";
    case "scheduled": return node.attempt > 1 ? "Queued again" : "Queued";
    case "running":
    case "retrying": {
      const parts = [];
      if (node.state === "retrying") parts.push("Retrying");
      if (p.stage) parts.push(STAGE_LABELS[p.stage] ?? p.stage);
      if (p.step != null && p.total_steps) parts.push(`step ${p.step}/${p.total_steps}`);
      if (typeof p.loss === "number") parts.push(`loss ${p.loss.toFixed(3)}`);
      if (typeof p.percent === "number") parts.push(`${Math.round(p.percent)}%`);
      return parts.length ? parts.join(" · ") : "Running";
    }
    case "completed": {
      const took = elapsed(node.startedAt, node.finishedAt);
      return took === null || took < 0.001 ? "Done" : `Done · ${seconds(took)}`;
    }
    case "failed": return "Failed";
    case "cancelled": return "Cancelled";
    case "skipped": return "Skipped";
    default: return node.state;
  }
}

/** Which runtime rendered each stage; the exact id stays in the tooltip. */
function whatRan(entries) {
  return h("div", { class: "rendering", role: "group", "aria-label": "What ran" },
    h("span", { class: "rendering-title" }, "What ran"),
    h("dl", {}, entries.map(([stage, id]) => h("div", { class: "rendering-stage", dataset: { stage } },
      h("dt", {}, STAGE_TITLES[stage] ?? stage),
      h("dd", { title: id }, runtimeLabel(id))))));
}

/** Downloads by kind, and caption files by format (SRT, WebVTT, ASS, then any other). */
const rank = (artifact) => {
  const i = ARTIFACT_ORDER.indexOf(artifact.kind);
  const format = artifact.kind === "captions" ? captionFormat(artifact) : 0;
  return (i < 0 ? ARTIFACT_ORDER.length : i) * 10 + (format < 0 ? 9 : format);
};
