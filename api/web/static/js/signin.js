// The sign-in form: an API key is exchanged once for an HttpOnly session cookie (POST /api/session).
// The key leaves the page with that request: the input is emptied and nothing keeps a copy.

import { post } from "./api.js";
import { h } from "./dom.js";

export class SignIn {
  constructor({ section, form, input, error, notice, onSignedIn }) {
    Object.assign(this, { section, form, input, error, notice, onSignedIn });
    this.button = form.querySelector('button[type="submit"]');
    form.addEventListener("submit", (event) => { event.preventDefault(); this.submit(); });
    input.addEventListener("input", () => this.clearError());
  }

  /** Show the form, with an optional notice ("Your session ended; sign in again."). */
  show(message = "") {
    this.section.hidden = false;
    this.notice.textContent = message;
    this.notice.hidden = !message;
    this.input.focus();
  }

  hide() {
    this.section.hidden = true;
    this.input.value = "";
    this.notice.hidden = true;
    this.clearError();
  }

  async submit() {
    if (this.busy) return;
    this.clearError();
    if (!this.input.value.trim()) return this.fail("Enter your API key.");
    this.setBusy(true);
    let caller;
    try {
      caller = await post("/api/session", { apiKey: this.input.value.trim() });
    } catch (err) {
      return this.fail(explain(err));
    } finally {
      this.setBusy(false);
    }
    this.input.value = "";
    this.onSignedIn(caller);
  }

  fail(message) {
    this.error.textContent = message;
    this.input.setAttribute("aria-invalid", "true");
    this.input.focus();
    this.input.select();
  }

  clearError() {
    this.error.textContent = "";
    this.input.removeAttribute("aria-invalid");
  }

  setBusy(busy) {
    this.busy = busy;
    this.button.disabled = busy;
    this.button.querySelector(".spinner")?.remove();
    if (busy) this.button.prepend(h("span", { class: "spinner", "aria-hidden": "true" }));
    this.form.setAttribute("aria-busy", String(busy));
  }
}

function explain(err) {
  if (err.status === 401) return "That API key is unknown or has been revoked. Check it and try again.";
  if (err.status === 422) return "That is not a whole API key: paste all of it (it starts with msb_).";
  if (err.status === 503) return `The service is unavailable right now: ${err.message}`;
  return err.message;
}
