// A file picker that uploads each chosen file at once (POST /api/uploads) and shows a preview,
// its progress and its own validation message; the form later sends the stored s3:// URIs.
// A deferred picker (music, whose upload needs the rights confirmed) uploads only when `send()` is called.

import { post } from "./api.js";
import { h, fill, icon } from "./dom.js";
import { bytes } from "./format.js";

export const MAX_UPLOAD_BYTES = 50 * 1024 * 1024;
const KINDS = {
  image: { ext: [".png", ".jpg", ".jpeg", ".webp"], noun: "photo", types: "PNG, JPEG or WebP" },
  audio: { ext: [".wav", ".mp3", ".m4a", ".ogg", ".flac"], noun: "voice clip", types: "WAV, MP3, M4A, OGG or FLAC" },
  music: { ext: [".wav", ".mp3", ".m4a", ".ogg", ".flac"], noun: "audio file", types: "WAV, MP3, M4A, OGG or FLAC" },
  // Scenes of a video (`options.media`): photos and video clips, previewed as pictures.
  media: {
    ext: [".png", ".jpg", ".jpeg", ".webp", ".mp4", ".mov", ".webm"], noun: "photo or clip", plural: "photos and clips",
    per: "video", types: "PNG, JPEG, WebP, MP4, MOV or WebM",
  },
};

let nextId = 0;

export class FileField {
  /**
   * @param {{input: HTMLInputElement, list: HTMLElement, error: HTMLElement, kind: "image"|"audio"|"music"|"media", max: number,
   *          deferred?: boolean}} opts `deferred`: keep chosen files until `send()`; with `max` 1 a new file replaces the old
   */
  constructor({ input, list, error, kind, max, deferred = false }) {
    Object.assign(this, { input, list, error, kind, max, deferred });
    this.spec = KINDS[kind];
    this.items = [];
    this.zone = input.closest(".dropzone");
    input.addEventListener("change", () => {
      this.add([...input.files]);
      input.value = ""; // so choosing the same file again fires `change`
    });
    for (const type of ["dragenter", "dragover"]) input.addEventListener(type, () => this.zone.classList.add("dragging"));
    for (const type of ["dragleave", "drop"]) input.addEventListener(type, () => this.zone.classList.remove("dragging"));
  }

  add(files) {
    this.error.textContent = "";
    if (this.max === 1 && files.length) this.clear();
    for (const file of files) {
      if (this.items.length >= this.max) {
        const what = this.spec.plural ?? `${this.spec.noun}s`;
        this.setError(`At most ${this.max} ${what} per ${this.spec.per ?? "profile"}; ${file.name} was left out.`);
        break;
      }
      const item = { id: `file-${nextId++}`, file, state: this.deferred ? "chosen" : "uploading", uri: null, message: "" };
      item.url = URL.createObjectURL(file);
      this.items.push(item);
      const problem = this.check(file);
      if (problem) {
        item.state = "error";
        item.message = problem;
      }
      this.list.append(this.tile(item));
      if (!problem && !this.deferred) this.upload(item);
    }
    this.sync();
  }

  check(file) {
    const dot = file.name.lastIndexOf(".");
    const ext = dot >= 0 ? file.name.slice(dot).toLowerCase() : "";
    if (!this.spec.ext.includes(ext)) return `Not a supported ${this.spec.noun} (${this.spec.types}).`;
    if (file.size === 0) return "This file is empty.";
    if (file.size > MAX_UPLOAD_BYTES) return `Larger than ${MAX_UPLOAD_BYTES / 1024 / 1024} MB (${bytes(file.size)}).`;
    return null;
  }

  /**
   * Upload the files chosen but not sent yet, each with the form `fields` (a deferred picker).
   * @returns {Promise<HttpError|null>} a refusal about one of `fields` (not about a file), for the form to show
   */
  async send(fields) {
    const refusals = await Promise.all(this.items.filter((i) => i.state === "chosen").map((i) => this.upload(i, fields)));
    return refusals.find(Boolean) ?? null;
  }

  /** Upload one file; a refusal about a form field (not the file) is returned, and the file stays chosen. */
  async upload(item, fields = {}) {
    const body = new FormData();
    for (const [name, value] of Object.entries(fields)) body.append(name, value);
    body.append("files", item.file, item.file.name);
    item.state = "uploading";
    if (item.el) this.render(item);
    let refusal = null;
    try {
      const answer = await post("/api/uploads", body);
      item.uri = answer.data[0].uri;
      item.state = "done";
    } catch (err) {
      const about = err.fields?.[0]?.loc?.[1];
      if (about !== undefined && about !== "files" && about in fields) {
        refusal = err;
        item.state = "chosen";
      } else {
        item.state = "error";
        item.message = plain(err.fields?.[0]?.msg ?? err.message, item.file.name);
      }
    }
    if (this.items.includes(item)) this.render(item);
    this.sync();
    return refusal;
  }

  tile(item) {
    const name = h("span", { class: "file-name", title: item.file.name }, item.file.name);
    const state = h("span", { class: "file-state", id: `${item.id}-state` });
    const remove = h("button", {
      type: "button", class: "file-remove", "aria-label": `Remove ${item.file.name}`,
      onclick: () => this.remove(item),
    }, icon("close"));
    const meta = h("div", { class: "file-meta" }, name, state);
    const placeholder = () => h("span", { class: "file-placeholder", "aria-hidden": "true" }, "?");
    const clip = /\.(mp4|mov|webm)$/i.test(item.file.name);
    const preview = item.state === "error"
      ? placeholder()
      : clip
        // `#t=0.1`: seeking is what makes Chromium decode a frame to show; without it the tile stays blank.
        ? h("video", { src: `${item.url}#t=0.1`, muted: true, preload: "metadata", "aria-label": `Preview of ${item.file.name}`,
          onerror: () => preview.replaceWith(placeholder()) })
        : h("img", { src: item.url, alt: `Preview of ${item.file.name}`, onerror: () => preview.replaceWith(placeholder()) });
    item.el = this.kind === "image" || this.kind === "media"
      ? h("li", { class: "file image", "aria-describedby": `${item.id}-state` }, preview, meta, remove)
      : h("li", { class: "file audio", "aria-describedby": `${item.id}-state` },
        meta, remove, h("audio", { src: item.url, controls: true, preload: "metadata", "aria-label": `Listen to ${item.file.name}` }));
    item.stateEl = state;
    this.render(item);
    return item.el;
  }

  render(item) {
    item.el.dataset.state = item.state;
    item.stateEl.textContent = {
      chosen: `Chosen · ${bytes(item.file.size)}`,
      uploading: "Uploading…",
      done: `Ready · ${bytes(item.file.size)}`,
      error: item.message,
    }[item.state];
    item.stateEl.setAttribute("role", item.state === "error" ? "alert" : "status");
  }

  remove(item) {
    URL.revokeObjectURL(item.url);
    item.el.remove();
    this.items = this.items.filter((i) => i !== item);
    this.error.textContent = "";
    this.sync();
    this.input.focus();
  }

  /** Mark the file sent at `index` of `uris()` with a server message (422 at `images[index]`). */
  markSent(index, message) {
    const item = this.items.filter((i) => i.state === "done")[index];
    if (!item) return false;
    item.state = "error";
    item.message = message;
    this.render(item);
    this.sync();
    return true;
  }

  setError(message) {
    this.error.textContent = message;
    this.sync();
  }

  sync() {
    const invalid = Boolean(this.error.textContent) || this.items.some((i) => i.state === "error");
    this.zone.classList.toggle("invalid", invalid);
    this.input.setAttribute("aria-invalid", String(invalid));
  }

  uris() { return this.items.filter((i) => i.state === "done").map((i) => i.uri); }
  get busy() { return this.items.some((i) => i.state === "uploading"); }
  get broken() { return this.items.filter((i) => i.state === "error"); }

  clear() {
    for (const item of [...this.items]) URL.revokeObjectURL(item.url);
    this.items = [];
    fill(this.list);
    this.error.textContent = "";
    this.sync();
  }
}

/** "'face.png' is not a readable image" → "This file is not a readable image." (the tile names the file). */
function plain(message, name) {
  const text = message.replace(`'${name}' is`, "This file is").replace(`'${name}':`, "").trim();
  return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
}
