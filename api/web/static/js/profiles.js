// The caller's profiles (GET /api/profiles): the picker of the generate form, and a list to
// delete them from (DELETE /api/profiles/{id} removes the weights, voice and training uploads too).

import { get, del } from "./api.js";
import { h, fill, icon, announce } from "./dom.js";
import { confirmAction } from "./dialog.js";
import { fullTime, when } from "./format.js";

// What a trained voice carries into jobs: a cloned voice where a cloning model ran, else the fitted pace.
const voiceWords = (p) => (!p.voiceId ? "" : p.voiceCloneEngine ? " · cloned voice" : " · voice profile: pace (and pitch)");
const STATUS_WORDS = { ready: "Ready", new: "Not trained yet", training: "Training", failed: "Training failed" };

export class Profiles {
  constructor({ select, manage, list, count }) {
    Object.assign(this, { select, manage, list, count });
  }

  async load() {
    let profiles = [];
    try {
      profiles = (await get("/api/profiles")).data;
    } catch {
      // The picker keeps the built-in presenter; the submit answer will explain any outage.
    }
    this.render(profiles);
  }

  clear() {
    this.render([]);
    this.manage.open = false;
  }

  render(profiles) {
    const previous = this.select.value;
    fill(this.select,
      h("option", { value: "" }, "Built-in presenter (no profile)"),
      profiles.map((p) => h("option", { value: p.id, disabled: p.status !== "ready" },
        `${p.name}${voiceWords(p)}${p.status !== "ready" ? ` (${p.status})` : ""}`)));
    this.select.value = profiles.some((p) => p.id === previous && p.status === "ready") ? previous : "";
    fill(this.list, profiles.map((p) => this.row(p)));
    this.count.textContent = `(${profiles.length})`;
    this.manage.hidden = profiles.length === 0;
  }

  row(profile) {
    const error = h("p", { class: "profile-error", role: "alert", hidden: true });
    const remove = h("button", {
      type: "button", class: "btn btn-small btn-danger", dataset: { action: "delete-profile" },
      "aria-label": `Delete profile ${profile.name}`,
    }, icon("trash"), "Delete");
    remove.addEventListener("click", () => this.remove(profile, remove, error));
    const status = STATUS_WORDS[profile.status] ?? profile.status;
    return h("li", { class: "profile-row", dataset: { profileId: profile.id, status: profile.status } },
      h("span", { class: "profile-main" },
        h("span", { class: "profile-name" }, profile.name),
        h("span", { class: "profile-sub" },
          status, voiceWords(profile),
          h("span", { title: fullTime(profile.createdAt) }, ` · created ${when(profile.createdAt)}`))),
      remove, error);
  }

  async remove(profile, button, error) {
    const ok = await confirmAction({
      title: `Delete the profile “${profile.name}”?`,
      message: "Its trained face and voice profile, its photos, voice clips and training checkpoints are deleted for good. "
        + "Videos already made with it stay.",
      confirm: "Delete profile",
      opener: button,
    });
    if (!ok) return;
    button.disabled = true;
    error.hidden = true;
    try {
      await del(`/api/profiles/${encodeURIComponent(profile.id)}`);
    } catch (err) {
      error.textContent = err.status === 405 ? "This server cannot delete profiles yet." : err.message;
      error.hidden = false;
      button.disabled = false;
      return;
    }
    announce(`Profile ${profile.name} deleted.`);
    await this.load();
    (this.list.querySelector("button") ?? this.select).focus();
  }
}
