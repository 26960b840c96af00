// One confirmation dialog for destructive actions: a native <dialog> (focus stays inside it,
// Escape cancels), with Cancel focused first so Enter never deletes by accident.

const dialog = () => document.getElementById("confirm");

/**
 * Ask before doing something that cannot be undone; resolves true only for the confirm button.
 * Focus returns to `opener`: callers that disable their button while waiting pass it, since
 * Chromium blurs a focused button when it is disabled, leaving `document.activeElement` on the body.
 * `opener` may be a function that finds the element when the dialog closes: a card that re-renders
 * meanwhile replaces its buttons, and focus must land on the new one, not on a detached node.
 */
export function confirmAction({ title, message, confirm, opener = document.activeElement }) {
  const el = dialog();
  el.querySelector("#confirm-title").textContent = title;
  el.querySelector("#confirm-message").textContent = message;
  el.querySelector("#confirm-ok").textContent = confirm;
  el.returnValue = "";
  return new Promise((resolve) => {
    el.addEventListener("close", () => {
      resolve(el.returnValue === "confirm");
      // After the caller's own reaction (it may re-enable or remove the button that opened us).
      setTimeout(() => {
        const target = typeof opener === "function" ? opener() : opener;
        if (target instanceof HTMLElement && target.isConnected && !el.open) target.focus();
      });
    }, { once: true });
    if (!el.dataset.wired) {
      el.dataset.wired = "1";
      el.addEventListener("click", (event) => { if (event.target === el) el.close(""); }); // the backdrop
    }
    el.showModal();
    el.querySelector("#confirm-cancel").focus();
  });
}
