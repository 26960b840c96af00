// The submission form: capabilities decide what is selectable, the server validates, and each
// 422 `detail[].loc` is shown next to its field.

import { post, HttpError } from "./api.js";
import { BatchOptions, formErrors, jobHints } from "./batches.js";
import { h, fill, announce } from "./dom.js";
import { preferredRuntimes, variantDescription, variantTitle } from "./runtimes.js";
import { FileField } from "./uploads.js";

const MUSIC_BEDS = ["none", "calm", "upbeat"];
const RESOLUTION_NOTES = { "480p": "480p · fastest", "576p": "576p", "720p": "720p · HD", "1080p": "1080p · Full HD" };

// Field path (the part of `loc` after "body") → the control that gets `aria-invalid` and focus.
const CONTROLS = {
  topic: "topic",
  style: "style",
  profileId: "profile",
  profileName: "profile-name",
  images: "images",
  audio: "audio",
  trainingPreset: "preset",
  preset: "saved-preset",
  variant: "variant-svd",
  "options.durationSeconds": "duration-seconds",
  "options.resolution": "resolution",
  "options.aspectRatio": "aspect-16-9",
  "options.captions": "captions",
  "options.review": "review",
  "options.captionStyle": "caption-style-plain",
  "options.captionPosition": "caption-position-bottom",
  "options.music": "music",
  "options.musicVolume": "music-volume",
  "options.media": "media",
  musicFile: "music-file",
  rightsConfirmed: "music-rights",
  "script.narrative": "narrative",
  "script": "narrative",
  consent: "consent",
  items: "topic", // a batch's jobs: too many, or none
  variants: "batch-variant-svd",
  aspectRatios: "batch-aspect-16-9",
};

// Radio groups: the checked radio takes the error's `aria-invalid` and focus.
const RADIO_GROUPS = {
  variant: "variant",
  "options.aspectRatio": "aspectRatio",
  "options.captionStyle": "captionStyle",
  "options.captionPosition": "captionPosition",
};

// The pickers' own error slots: a picker clears them itself (they describe its files, not the last submit).
const FILE_ERRORS = ["err-images", "err-audio", "err-options.media"];

const CONSENT_MESSAGE = "Tick the box to confirm you have the right to use these faces and voices.";
const RIGHTS_MESSAGE = "Tick the box to confirm you hold the rights to use this music in your videos.";
const MUSIC_FILE_MESSAGE = "Choose an audio file, or pick another music option.";
// Messages the page words itself, whatever the server said.
const FIXED = { consent: CONSENT_MESSAGE, rightsConfirmed: RIGHTS_MESSAGE };

// Plain words for the schema's terse messages, keyed by "field:error type".
const FRIENDLY = {
  "topic:string_too_short": "Tell us what the video is about.",
  "topic:missing": "Tell us what the video is about.",
  "images:too_short": "Add at least one photo of the face.",
  "script.narrative:string_too_short": "Write some narration, or close this section to let the writer draft it.",
  "topic:too_short": "Write at least one topic, one per line.",
  "variants:too_short": "Tick at least one pipeline.",
  "aspectRatios:too_short": "Tick at least one aspect ratio.",
};

export class JobForm {
  constructor(form, { onSubmitted, onBatchSubmitted }) {
    this.form = form;
    this.onSubmitted = onSubmitted;
    this.onBatchSubmitted = onBatchSubmitted;
    this.$ = (id) => document.getElementById(id);
    this.batch = new BatchOptions(form);
    this.images = new FileField({ input: this.$("images"), list: this.$("images-list"), error: this.$("err-images"), kind: "image", max: 20 });
    // The svd scenes from the caller's own photos and clips (`options.media`), uploaded as soon as they are chosen.
    this.media = new FileField({
      input: this.$("media"), list: this.$("media-list"), error: this.$("err-options.media"), kind: "media", max: 20,
    });
    this.audio = new FileField({ input: this.$("audio"), list: this.$("audio-list"), error: this.$("err-audio"), kind: "audio", max: 10 });
    // Music is uploaded on submit: its upload needs the rights box, which may be ticked after the file is chosen.
    this.music = new FileField({
      input: this.$("music-file"), list: this.$("music-file-list"), error: this.$("err-musicFile"), kind: "music", max: 1, deferred: true,
    });
    this.submitButton = this.$("submit");
    form.addEventListener("submit", (event) => { event.preventDefault(); this.submit(); });
    form.addEventListener("change", (event) => this.changed(event.target));
    form.addEventListener("input", (event) => {
      this.clearFieldError(event.target);
      if (event.target.id === "music-volume") this.showVolume();
      if (event.target.id === "topic") this.batch.sync(); // the batch's video count follows the lines
    });
    this.changed(null);
  }

  get mode() { return this.form.elements.mode.value; }
  get trainOnly() { return this.mode === "train" && this.$("train-only").checked; }
  get ownMusic() { return !this.trainOnly && this.$("music").value === "own"; }
  get ownMedia() { return !this.trainOnly && this.form.elements.variant.value === "svd"; }

  changed(target) {
    if (target) this.clearFieldError(target);
    for (const section of this.form.querySelectorAll(".mode-only")) section.hidden = section.dataset.mode !== this.mode;
    this.$("render-options").hidden = this.trainOnly;
    const custom = this.form.elements.duration.value === "custom";
    this.$("custom-duration").hidden = !custom;
    if (target?.id === "duration-custom") this.$("duration-seconds").focus();
    this.$("caption-options").hidden = !this.$("captions").checked;
    const music = this.$("music").value;
    this.$("music-volume-field").hidden = music === "none";
    this.$("music-own").hidden = music !== "own";
    this.$("media-field").hidden = !this.ownMedia; // only the svd variant has a scene to replace
    this.showVolume();
    const batch = this.batch.sync();
    const label = this.mode === "generate" ? (batch ? "Create videos" : "Create video") : this.trainOnly ? "Train profile" : "Train & create video";
    this.submitButton.querySelector(".btn-label").textContent = label;
  }

  showVolume() {
    const volume = this.$("music-volume");
    this.$("music-volume-value").textContent = `${volume.value} %`;
    volume.setAttribute("aria-valuetext", `${volume.value} %`);
  }

  /** Make only the advertised variants, resolutions, durations and presets selectable. */
  applyCapabilities(caps) {
    const offered = caps?.gpu?.variants ?? [];
    this.batch.applyCapabilities(offered);
    for (const input of this.form.querySelectorAll('input[name="variant"]')) {
      const ok = offered.includes(input.value);
      input.disabled = !ok;
      const label = input.labels[0];
      // Models are named only when the workers would run them (their preferred runtime per stage).
      const ran = preferredRuntimes(caps?.gpu?.runtimes, input.value);
      label.querySelector(".choice-title").textContent = variantTitle(input.value, ran);
      label.querySelector(".choice-desc").textContent = variantDescription(input.value, ran);
      label.querySelector(".choice-reason")?.remove();
      if (!ok) {
        const why = caps?.gpu ? "Not offered by the connected GPU workers." : "No GPU worker is online right now.";
        label.append(h("span", { class: "choice-reason" }, why));
      }
    }
    const checked = this.form.querySelector('input[name="variant"]:checked');
    if (checked?.disabled) {
      const first = this.form.querySelector('input[name="variant"]:not(:disabled)');
      if (first) first.checked = true;
    }

    const resolutions = caps?.constraints?.resolutions?.length ? caps.constraints.resolutions : ["480p"];
    const select = this.$("resolution");
    const previous = select.value;
    fill(select, resolutions.map((r) => h("option", { value: r }, RESOLUTION_NOTES[r] ?? r)));
    select.value = resolutions.includes(previous) ? previous : resolutions[0];

    const max = caps?.constraints?.max_duration_seconds || 0;
    const seconds = this.$("duration-seconds");
    if (max > 0) {
      seconds.max = String(max);
      for (const input of this.form.querySelectorAll('input[name="duration"]')) {
        if (input.value === "custom") continue;
        input.disabled = Number(input.value) > max;
        input.labels[0].title = input.disabled ? `Longer than the ${max} s the workers allow` : "";
      }
      this.$("duration-hint").textContent = `Up to ${max} s on the connected workers.`;
      const chosen = this.form.querySelector('input[name="duration"]:checked');
      if (chosen?.disabled) {
        const fits = [...this.form.querySelectorAll('input[name="duration"]:not(:disabled)')];
        fits[fits.length > 1 ? fits.length - 2 : 0].checked = true; // the longest preset that fits
        this.changed(null);
      }
    }

    const train = this.$("mode-train");
    const canTrain = Boolean(caps?.gpu?.tasks?.includes("train_lora"));
    train.disabled = !canTrain;
    this.$("mode-hint").hidden = canTrain;
    if (!canTrain && train.checked) {
      this.$("mode-generate").checked = true;
      this.changed(null);
    }

    const presets = caps?.gpu?.training_presets ?? [];
    fill(this.$("preset"), presets.map((p) => h("option", { value: p }, p.replace(/^./, (c) => c.toUpperCase()))));
    this.$("preset-field").hidden = presets.length === 0;
  }

  /** The request the form stands for: `[path, body]` (with `single`, never a batch's). */
  body({ single = false } = {}) {
    const el = this.form.elements;
    const text = (id) => this.$(id).value.trim();
    const duration = el.duration.value === "custom" ? Number(this.$("duration-seconds").value) : Number(el.duration.value);
    const body = { topic: text("topic"), variant: el.variant.value };
    if (text("style")) body.style = text("style");
    if (this.$("script-details").open && text("narrative")) body.script = { narrative: text("narrative") };
    if (!this.trainOnly) {
      body.options = {
        durationSeconds: Number.isFinite(duration) ? duration : 0,
        resolution: el.resolution.value,
        aspectRatio: el.aspectRatio.value,
        captions: this.$("captions").checked,
      };
      if (this.$("review").checked) body.options.review = true;
      if (body.options.captions) {
        body.options.captionStyle = el.captionStyle.value;
        body.options.captionPosition = el.captionPosition.value;
      }
      const music = this.ownMusic ? this.music.uris()[0] : this.$("music").value;
      body.options.music = music;
      if (music !== "none") body.options.musicVolume = Number(this.$("music-volume").value) / 100;
      if (this.ownMedia && this.media.uris().length) body.options.media = this.media.uris();
    }
    // A chosen preset is named too: the server fills in what the form has no control for (voice, language).
    if (this.$("saved-preset").value) body.preset = this.$("saved-preset").value;
    if (this.mode === "generate") {
      body.mode = "generate";
      if (el.profileId.value) body.profileId = el.profileId.value;
      return this.batch.on && !single ? this.batch.request(body) : ["/api/generate", body];
    }
    body.mode = this.trainOnly ? "train_only" : "train_and_generate";
    body.images = this.images.uris();
    body.audio = this.audio.uris();
    if (text("profile-name")) body.profileName = text("profile-name");
    if (el.trainingPreset.value) body.trainingPreset = el.trainingPreset.value;
    body.consent = this.$("consent").checked;
    return ["/api/train", body];
  }

  /** The pipeline and render options as a preset saves them (own music only once it is uploaded). */
  presetSettings() {
    const [, body] = this.body({ single: true });
    const settings = { variant: body.variant };
    // Photos and clips are what one video shows, not a setting to reuse: a preset never keeps them.
    if (body.options) {
      settings.options = Object.fromEntries(Object.entries(body.options).filter(([k, v]) => v !== undefined && k !== "media"));
    }
    return settings;
  }

  /** Set the controls from a saved preset (`GET /api/presets`); what it does not set stays as it is. */
  applyPreset(preset) {
    const radio = (name, value) => {
      const input = value === undefined ? null : this.form.querySelector(`input[name="${name}"][value="${CSS.escape(String(value))}"]`);
      if (input && !input.disabled) input.checked = true;
    };
    radio("variant", preset.variant);
    const o = preset.options;
    if (o) {
      if (o.durationSeconds !== undefined) {
        const chips = [...this.form.querySelectorAll('input[name="duration"]:not([value="custom"])')];
        const chip = chips.find((c) => Number(c.value) === o.durationSeconds && !c.disabled);
        if (chip) chip.checked = true;
        else {
          this.$("duration-custom").checked = true;
          this.$("duration-seconds").value = String(o.durationSeconds);
        }
      }
      if ([...this.$("resolution").options].some((opt) => opt.value === o.resolution)) this.$("resolution").value = o.resolution;
      radio("aspectRatio", o.aspectRatio);
      if (o.captions !== undefined) this.$("captions").checked = o.captions;
      if (o.review !== undefined) this.$("review").checked = o.review;
      radio("captionStyle", o.captionStyle);
      radio("captionPosition", o.captionPosition);
      if (o.music !== undefined) this.setMusic(o.music);
      if (o.musicVolume !== undefined) this.$("music-volume").value = String(Math.round(o.musicVolume * 100));
    }
    this.clearErrors();
    this.changed(null);
  }

  /** A bed, or a music upload a preset saved (offered as its own choice: it is already uploaded). */
  setMusic(music) {
    const select = this.$("music");
    select.querySelector("option[data-saved-music]")?.remove();
    if (!MUSIC_BEDS.includes(music)) {
      select.querySelector('option[value="own"]').before(h("option", { value: music, dataset: { savedMusic: "" } }, "Music saved in the preset"));
    }
    select.value = music;
  }

  /** Only what the server cannot see is checked here: files still uploading or refused. */
  localProblems() {
    const fields = [...(this.mode === "train" ? [this.images, this.audio] : []), ...(this.ownMusic ? [this.music] : []),
      ...(this.ownMedia ? [this.media] : [])];
    if (fields.some((f) => f.busy)) return "Wait for the uploads to finish, then try again.";
    const broken = fields.flatMap((f) => f.broken);
    if (broken.length) return `Remove the ${broken.length === 1 ? "file" : "files"} marked in red first.`;
    return null;
  }

  /** Training needs the user's explicit consent: without the box ticked, nothing is sent. */
  consentMissing() {
    if (this.mode !== "train" || this.$("consent").checked) return false;
    this.showFieldErrors([{ loc: ["body", "consent"], msg: CONSENT_MESSAGE, type: "missing" }]);
    return true;
  }

  /** Own music needs a file and the rights box: without both, nothing is uploaded or sent. */
  musicMissing() {
    if (!this.ownMusic) return false;
    const missing = [];
    if (!this.music.items.length) missing.push({ loc: ["body", "musicFile"], msg: MUSIC_FILE_MESSAGE, type: "missing" });
    if (!this.$("music-rights").checked) missing.push({ loc: ["body", "rightsConfirmed"], msg: RIGHTS_MESSAGE, type: "missing" });
    if (missing.length) this.showFieldErrors(missing);
    return missing.length > 0;
  }

  /** Upload the chosen music (once); false when it was refused, with the reason shown. */
  async sendMusic() {
    if (!this.ownMusic) return true;
    const refusal = await this.music.send({ purpose: "music", rightsConfirmed: "true" });
    if (refusal) {
      this.showFieldErrors(refusal.fields);
      return false;
    }
    if (this.music.broken.length) {
      this.showFormError("The music file was refused; remove it or choose another.");
      this.music.input.focus();
      return false;
    }
    return this.music.uris().length > 0;
  }

  async submit() {
    if (this.submitting) return;
    this.clearErrors();
    const problem = this.localProblems();
    if (problem) return this.showFormError(problem);
    if (this.consentMissing() || this.musicMissing()) return;
    this.setBusy(true);
    try {
      if (!(await this.sendMusic())) return;
      const [path, body] = this.body();
      const accepted = await post(path, body);
      this.$("submit-hint").textContent = "Started. Follow it under “Your jobs”.";
      if (accepted.batchId) this.onBatchSubmitted(accepted, jobHints(body));
      else this.onSubmitted(accepted.jobId, body);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      if (err.status === 422 && err.fields.length) this.showFieldErrors(formErrors(err.fields));
      else this.showFormError(err.message);
    } finally {
      this.setBusy(false);
    }
  }

  /** Back to a blank form (another person signed in, or this one signed out). */
  reset() {
    this.form.reset();
    this.$("music").querySelector("option[data-saved-music]")?.remove();
    this.images.clear();
    this.audio.clear();
    this.media.clear();
    this.music.clear();
    this.$("script-details").open = false;
    this.$("submit-hint").textContent = "";
    this.clearErrors();
    this.changed(null);
  }

  setBusy(busy) {
    this.submitting = busy;
    this.submitButton.disabled = busy;
    this.submitButton.querySelector(".spinner")?.remove();
    if (busy) this.submitButton.prepend(h("span", { class: "spinner", "aria-hidden": "true" }));
    this.form.setAttribute("aria-busy", String(busy));
    if (busy) this.$("submit-hint").textContent = "";
  }

  showFieldErrors(details) {
    let first = null;
    const unplaced = [];
    for (const detail of details) {
      const path = detail.loc[0] === "body" ? detail.loc.slice(1) : detail.loc;
      const placed = this.place(path, detail);
      if (placed && !first) first = placed;
      if (!placed) unplaced.push(detail.msg);
    }
    if (unplaced.length) this.showFormError(unplaced.join(" "));
    else this.showFormError(details.length === 1 ? "Please fix the highlighted field." : "Please fix the highlighted fields.");
    if (first) {
      if (first.closest("details")) first.closest("details").open = true;
      first.focus();
    }
    announce("The job was not started: some fields need attention.");
  }

  /** Show one error next to its field; return the control to focus, or null when no field matches. */
  place(path, detail) {
    const names = path.filter((p) => typeof p === "string");
    const index = path.find((p) => typeof p === "number");
    for (let n = names.length; n > 0; n -= 1) {
      const key = names.slice(0, n).join(".");
      const slot = this.form.querySelector(`[data-error-for="${CSS.escape(key)}"]`);
      if (!slot) continue;
      const message = this.friendly(key, detail);
      const files = { images: this.images, audio: this.audio, "options.media": this.media }[key] ?? null;
      if (files && index !== undefined && files.markSent(index, message)) {
        files.input.setAttribute("aria-invalid", "true");
      } else if (key === "musicFile") {
        this.music.setError(message); // marks the drop zone too
      } else {
        slot.textContent = message;
      }
      return this.invalidControl(key);
    }
    return null;
  }

  friendly(key, detail) {
    if (FIXED[key]) return FIXED[key];
    const known = FRIENDLY[`${key}:${detail.type}`];
    if (known) return known;
    let msg = String(detail.msg ?? "").replace(/^Value error, /, "");
    const limit = msg.match(/exceeds the advertised maximum of ([\d.]+ ?\w*)/);
    if (limit) return `Longer than the connected workers allow (up to ${limit[1]}).`;
    const field = key.split(".").pop();
    if (msg.startsWith(`${field} `)) msg = msg.slice(field.length + 1); // the message repeats the field's name
    return msg.charAt(0).toUpperCase() + msg.slice(1) + (/[.!?]$/.test(msg) ? "" : ".");
  }

  invalidControl(key) {
    let id = CONTROLS[key];
    if (key === "options.durationSeconds" && this.form.elements.duration.value !== "custom") {
      id = this.form.querySelector('input[name="duration"]:checked').id;
    } else if (RADIO_GROUPS[key]) {
      id = this.form.querySelector(`input[name="${RADIO_GROUPS[key]}"]:checked`)?.id ?? id;
    }
    const control = id ? this.$(id) : null;
    control?.setAttribute("aria-invalid", "true");
    return control;
  }

  clearFieldError(target) {
    if (!target?.closest) return;
    const field = target.closest(".field, fieldset");
    if (!field) return;
    for (const slot of field.querySelectorAll(".field-error")) {
      if (!FILE_ERRORS.includes(slot.id)) slot.textContent = "";
    }
    for (const el of field.querySelectorAll('[aria-invalid="true"]')) {
      if (el.type !== "file") el.removeAttribute("aria-invalid");
    }
    this.music.sync();
    if (!this.form.querySelector('.field-error:not(:empty), [aria-invalid="true"]:not([type="file"])')) this.hideFormError();
  }

  clearErrors() {
    for (const slot of this.form.querySelectorAll(".field-error")) {
      if (!FILE_ERRORS.includes(slot.id)) slot.textContent = "";
    }
    for (const el of this.form.querySelectorAll('[aria-invalid="true"]')) {
      if (el.type !== "file") el.removeAttribute("aria-invalid");
    }
    this.music.sync();
    this.hideFormError();
  }

  showFormError(message) {
    const box = this.$("form-error");
    box.textContent = message;
    box.hidden = false;
  }

  hideFormError() {
    const box = this.$("form-error");
    box.hidden = true;
    box.textContent = "";
  }
}
