// The script review of a job card (`options.review`): the job waits, holding no GPU, until the
// person approves, edits or rejects its script (GET/POST /api/jobs/{id}/script).

import { get, post } from "./api.js";
import { h, fill, icon, announce } from "./dom.js";
import { fullTime, seconds } from "./format.js";

// The estimate of schemas/speech.py `estimate_spoken_seconds`, so the length shows as the person
// types; the server checks the same estimate when the edit is sent (a browser test compares them).
const SENTENCE_PAUSE_SECONDS = 0.35;
const WORD = /[\p{L}\p{M}\p{N}_]+(?:['’][\p{L}\p{M}\p{N}_]+)*/gu;
const SENTENCE_END = /(?<=[.!?;:…。！？])\s*|\n\s*\n/u;

export function estimateSpokenSeconds(text, wordsPerMinute) {
  const words = (text.match(WORD) ?? []).length;
  const sentences = text.split(SENTENCE_END).filter((part) => part && part.match(WORD)).length;
  return (words * 60) / wordsPerMinute + Math.max(1, sentences) * SENTENCE_PAUSE_SECONDS;
}

export class ReviewPanel {
  constructor(jobId, { notice }) {
    this.jobId = jobId;
    this.notice = notice;
    this.view = null;
    const id = (name) => `${name}-${jobId}`;
    this.narrative = h("textarea", { id: id("review-narrative"), class: "review-text", rows: "6", maxlength: "5000",
      "aria-describedby": id("review-estimate"), oninput: () => {
        this.narrative.removeAttribute("aria-invalid");
        this.estimate();
      } });
    this.stage = h("input", { id: id("review-stage"), type: "text", maxlength: "2000" });
    this.estimateEl = h("p", { class: "review-estimate", id: id("review-estimate"), "aria-live": "polite" });
    this.reason = h("input", { id: id("review-reason"), type: "text", maxlength: "500", placeholder: "Optional" });
    this.untilEl = h("p", { class: "hint" });
    this.approveBtn = this.button("Approve and render", "check", "btn-primary", () => this.act("approve"));
    this.saveBtn = this.button("Save edit", "copy", "", () => this.act("edit"));
    this.rejectBtn = this.button("Reject", "cross", "btn-danger", () => this.act("reject"));
    this.el = h("section", { class: "review", "aria-label": "Review the script", hidden: true },
      h("h4", { class: "review-title" }, "Your script is ready: review it before rendering"),
      h("label", { class: "label", for: this.narrative.id }, "Narration"), this.narrative, this.estimateEl,
      h("label", { class: "label", for: this.stage.id }, "Scene"), this.stage,
      h("div", { class: "review-actions" }, this.approveBtn, this.saveBtn,
        h("span", { class: "review-reject" },
          h("label", { class: "label", for: this.reason.id }, "Reason to reject"), this.reason, this.rejectBtn)),
      this.untilEl);
  }

  button(label, glyph, cls, handler) {
    const btn = h("button", { type: "button", class: `btn btn-small ${cls}`, dataset: { review: label.split(" ")[0].toLowerCase() } },
      icon(glyph), label);
    btn.addEventListener("click", async () => {
      this.setBusy(true);
      try {
        await handler();
      } catch (err) {
        this.notice(err.message);
        this.narrative.setAttribute("aria-invalid", String(err.fields?.some((f) => f.loc?.at(-1) === "narrative") ?? false));
      } finally {
        this.setBusy(false);
      }
    });
    return btn;
  }

  setBusy(busy) {
    for (const btn of [this.approveBtn, this.saveBtn, this.rejectBtn]) btn.disabled = busy;
  }

  /** Show the editor while the job waits (once per wait); hide it otherwise. */
  async update(waiting) {
    if (!waiting) {
      this.el.hidden = true;
      this.shown = false;
      return;
    }
    if (this.shown) return;
    this.shown = true;
    this.show(await get(`/api/jobs/${encodeURIComponent(this.jobId)}/script`));
  }

  show(view) {
    this.view = view;
    this.narrative.value = view.narrative ?? "";
    this.stage.value = view.stage ?? "";
    this.narrative.removeAttribute("aria-invalid");
    this.untilEl.textContent = view.waitingUntil
      ? `The job waits for you until ${fullTime(view.waitingUntil)}; then it is cancelled.`
      : "";
    this.estimate();
    this.el.hidden = view.state !== "waiting";
  }

  /** The spoken length of the text as typed, against the lengths the video can hold. */
  estimate() {
    const view = this.view;
    if (!view?.wordsPerMinute || !view.spokenSecondsRange) {
      this.estimateEl.textContent = "";
      return;
    }
    const spoken = estimateSpokenSeconds(this.narrative.value, view.wordsPerMinute);
    const [low, high] = view.spokenSecondsRange;
    const fits = spoken >= low && spoken <= high;
    this.estimateEl.dataset.fits = String(fits);
    fill(this.estimateEl, `About ${seconds(spoken)} spoken`,
      h("span", { class: "sep" }, fits
        ? `fits the ${seconds(view.durationSeconds)} video`
        : spoken > high ? `too long for the ${seconds(view.durationSeconds)} video (at most ${seconds(high)})`
          : `too short for the ${seconds(view.durationSeconds)} video (at least ${seconds(low)})`));
  }

  async act(action) {
    const body = { action };
    const narrative = this.narrative.value.trim();
    const stage = this.stage.value.trim();
    if (action !== "reject") {
      if (narrative && narrative !== this.view.narrative) body.narrative = narrative;
      if (stage && stage !== this.view.stage) body.stage = stage;
      if (action === "edit" && !body.narrative) body.narrative = narrative;
    } else if (this.reason.value.trim()) {
      body.reason = this.reason.value.trim();
    }
    const view = await post(`/api/jobs/${encodeURIComponent(this.jobId)}/script`, body);
    this.show(view);
    const said = { approve: "Script approved: rendering starts.", edit: "Edit saved; the job still waits for your approval.",
      reject: "Script rejected: the job is cancelled." }[action];
    this.notice(said);
    announce(said);
  }
}
