// The caller's saved presets (GET/POST/DELETE /api/presets): a picker that applies one to the form
// (and names it in the submitted body, so its voice and language come along), "Save as preset"
// for the form's pipeline and options, and a list to delete them from.

import { get, post, del, HttpError } from "./api.js";
import { h, fill, icon, announce } from "./dom.js";
import { confirmAction } from "./dialog.js";
import { fullTime, when } from "./format.js";

const NAME_RULE = "Use 1–64 characters, without / or \\ (and not only dots).";

export class Presets {
  constructor({ form, select, name, save, error, manage, list, count }) {
    Object.assign(this, { form, select, name, save, error, manage, list, count });
    this.presets = [];
    select.addEventListener("change", () => this.apply());
    save.addEventListener("click", () => this.saveForm());
    // Enter in the name field saves the preset; it must not submit the job form.
    name.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      this.saveForm();
    });
    name.addEventListener("input", () => this.clearError());
  }

  async load() {
    try {
      this.render((await get("/api/presets")).data);
    } catch {
      this.render([]); // the picker stays empty; saving explains any outage
    }
  }

  clear() {
    this.render([]);
    this.name.value = "";
    this.clearError();
    this.manage.open = false;
  }

  render(presets) {
    this.presets = presets;
    const previous = this.select.value;
    fill(this.select, h("option", { value: "" }, "No preset"), presets.map((p) => h("option", { value: p.name }, p.name)));
    this.select.value = presets.some((p) => p.name === previous) ? previous : "";
    fill(this.list, presets.map((p) => this.row(p)));
    this.count.textContent = `(${presets.length})`;
    this.manage.hidden = presets.length === 0;
  }

  /** Set the form's controls from the chosen preset. */
  apply() {
    const preset = this.presets.find((p) => p.name === this.select.value);
    if (!preset) return;
    this.form.applyPreset(preset);
    announce(`Preset ${preset.name} applied.`);
  }

  async saveForm() {
    this.clearError();
    const name = this.name.value.trim();
    if (!name) return this.showError("Name the preset first.");
    if (/[/\\]/.test(name) || /^\.+$/.test(name)) return this.showError(NAME_RULE);
    this.save.disabled = true;
    try {
      await post("/api/presets", { name, ...this.form.presetSettings() });
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      if (err.status === 409 && err.message.includes("exists")) {
        this.showError(`A preset called “${name}” exists already: choose another name, or delete that one first.`);
      } else if (err.status === 422 && err.fields.some((f) => f.loc?.[1] === "name")) {
        this.showError(NAME_RULE);
      } else {
        this.showError(err.message);
      }
      return;
    } finally {
      this.save.disabled = false;
    }
    this.name.value = "";
    announce(`Preset ${name} saved.`);
    await this.load();
  }

  showError(message) {
    this.error.textContent = message;
    this.name.setAttribute("aria-invalid", "true");
    this.name.focus();
  }

  clearError() {
    this.error.textContent = "";
    this.name.removeAttribute("aria-invalid");
  }

  row(preset) {
    const error = h("p", { class: "profile-error", role: "alert", hidden: true });
    const remove = h("button", {
      type: "button", class: "btn btn-small btn-danger", dataset: { action: "delete-preset" },
      "aria-label": `Delete preset ${preset.name}`,
    }, icon("trash"), "Delete");
    remove.addEventListener("click", () => this.remove(preset, remove, error));
    return h("li", { class: "profile-row", dataset: { preset: preset.name } },
      h("span", { class: "profile-main" },
        h("span", { class: "profile-name" }, preset.name),
        h("span", { class: "profile-sub" }, describe(preset),
          h("span", { title: fullTime(preset.createdAt) }, ` · saved ${when(preset.createdAt)}`))),
      remove, error);
  }

  async remove(preset, button, error) {
    const ok = await confirmAction({
      title: `Delete the preset “${preset.name}”?`,
      message: "Jobs already started with it keep their settings.",
      confirm: "Delete preset",
      opener: button,
    });
    if (!ok) return;
    button.disabled = true;
    error.hidden = true;
    try {
      await del(`/api/presets/${encodeURIComponent(preset.name)}`);
    } catch (err) {
      if (err.status !== 404) { // already gone elsewhere: the list is refreshed below
        error.textContent = err.message;
        error.hidden = false;
        button.disabled = false;
        return;
      }
    }
    announce(`Preset ${preset.name} deleted.`);
    await this.load();
    (this.list.querySelector("button") ?? this.select).focus();
  }
}

/** A short line about what the preset sets. */
function describe(preset) {
  const o = preset.options ?? {};
  const parts = [];
  if (preset.variant) parts.push(preset.variant === "sadtalker" ? "Animated portrait" : "Animated scene");
  if (o.durationSeconds) parts.push(`${o.durationSeconds} s`);
  if (o.resolution) parts.push(o.resolution);
  if (o.aspectRatio) parts.push(o.aspectRatio);
  if (o.captions) parts.push("captions");
  if (o.music && o.music !== "none") parts.push(o.music.startsWith("s3://") ? "own music" : `${o.music} music`);
  if (preset.language) parts.push(preset.language);
  if (preset.voice) parts.push(`voice ${preset.voice}`);
  return parts.join(" · ") || "No settings";
}
