// The sign-in ticket, kept for this browser tab only (sessionStorage), never in a cookie.

const KEY = "twm.ticket";

/** `{ticket, school, expires_at}` from the last sign-in in this tab, or null. */
export function loadTicket() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(KEY) ?? "null");
    if (saved && typeof saved.ticket === "string" && saved.school) return saved;
  } catch {
    // Damaged storage is the same as none: the teacher signs in again.
  }
  return null;
}

export function saveTicket(signedIn) {
  sessionStorage.setItem(
    KEY,
    JSON.stringify({ ticket: signedIn.ticket, school: signedIn.school, expires_at: signedIn.expires_at }),
  );
}

export function forgetTicket() {
  sessionStorage.removeItem(KEY);
}
