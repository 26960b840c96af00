// Wires the page: the session decides between the sign-in form and the app; capabilities and
// profiles go into the form, submissions and history into cards.

import { get, del, onUnauthorized } from "./api.js";
import { Board } from "./cards.js";
import { announce } from "./dom.js";
import { JobForm } from "./form.js";
import { History } from "./history.js";
import { Presets } from "./presets.js";
import { Profiles } from "./profiles.js";
import { SignIn } from "./signin.js";

const $ = (id) => document.getElementById(id);

const history = new History({
  list: $("history-list"), more: $("history-more"), empty: $("history-empty"), refresh: $("history-refresh"),
  onOpen: (jobId) => board.open(jobId, { focus: true }),
});

const profiles = new Profiles({
  select: $("profile"), manage: $("profiles-manage"), list: $("profile-list"), count: $("profiles-count"),
});

const board = new Board($("cards"), {
  onFinished: (card) => {
    history.load();
    if (card.record && card.record.mode !== "generate") profiles.load();
  },
  onDeleted: () => history.load(),
});

const form = new JobForm($("job-form"), {
  onSubmitted: (jobId, body) => {
    board.open(jobId, { hint: body });
    announce("Job started. Its progress is shown under Your jobs.");
    history.load();
  },
  onBatchSubmitted: (accepted, hints) => {
    board.openBatch(accepted, hints);
    announce(`Batch of ${accepted.jobIds.length} jobs started. Their progress is shown under Your jobs.`);
    history.load();
  },
});

const presets = new Presets({
  form, select: $("saved-preset"), name: $("preset-name"), save: $("save-preset"), error: $("err-presetName"),
  manage: $("presets-manage"), list: $("preset-list"), count: $("presets-count"),
});

const signIn = new SignIn({
  section: $("signin"), form: $("signin-form"), input: $("api-key"), error: $("err-api-key"), notice: $("signin-notice"),
  onSignedIn: (caller) => enter(caller, { focus: true }),
});

let lastUser = null; // who used the page last: a different person starts from a blank form

function enter(caller, { focus = false } = {}) {
  if (lastUser !== null && lastUser !== caller.userId) form.reset();
  lastUser = caller.userId;
  document.body.dataset.auth = "signed-in";
  signIn.hide();
  $("account-user").textContent = caller.userId;
  $("account-role").hidden = !caller.isAdmin;
  $("account-error").hidden = true;
  for (const id of ["app", "account", "workers"]) $(id).hidden = false;
  delete $("workers").dataset.state;
  $("workers").querySelector(".workers-text").textContent = "Checking workers…";
  if (focus) $("topic").focus();
  loadCapabilities();
  profiles.load();
  presets.load();
  history.load();
}

/** Back to the sign-in form; the cards, history and profiles of this user leave the page. */
function leave(message) {
  if (document.body.dataset.auth === "signed-out") return;
  document.body.dataset.auth = "signed-out";
  for (const id of ["app", "account", "workers"]) $(id).hidden = true;
  board.clear();
  history.clear();
  profiles.clear();
  presets.clear();
  signIn.show(message);
  announce(message);
}

// Only a signed-in page can lose its session: a 401 racing an explicit sign-out is not news.
onUnauthorized(() => {
  if (document.body.dataset.auth === "signed-in") leave("Your session ended; sign in again.");
});

$("sign-out").addEventListener("click", async () => {
  const button = $("sign-out");
  button.disabled = true;
  document.body.dataset.auth = "signing-out";
  try {
    await del("/api/session");
  } catch (err) {
    document.body.dataset.auth = "signed-in";
    $("account-error").textContent = `Could not sign out: ${err.message}`;
    $("account-error").hidden = false;
    return;
  } finally {
    button.disabled = false;
  }
  form.reset();
  lastUser = null;
  leave("You are signed out.");
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

async function start() {
  try {
    enter(await get("/api/session"));
  } catch (err) {
    document.body.dataset.auth = "signed-out";
    signIn.show(err.status === 401 ? "" : `Could not check your session: ${err.message}`);
  }
}

start();
