// The school page's REST calls: signing in with the access code, and today's sessions.

/** A refusal from the server, carrying its own words (`detail`) for the teacher to read. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }

  /** The ticket is missing, wrong or expired: the teacher must sign in again. */
  get signInAgain() {
    return this.status === 401;
  }
}

const UNREACHABLE =
  "The page cannot reach the Together with Music server. Check the internet connection and try again.";

async function request(method, path, { body, ticket } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (ticket) headers.Authorization = `Bearer ${ticket}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, UNREACHABLE);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    // A proxy's HTML error page, say: fall through to the generic words below.
  }
  if (!response.ok) {
    throw new ApiError(response.status, readableDetail(response.status, data));
  }
  return data;
}

function readableDetail(status, data) {
  // FastAPI puts its reason in `detail`; a validation error makes it a list, which means
  // nothing to a teacher, so only a plain string is shown as it is.
  if (data && typeof data.detail === "string" && data.detail.trim()) return data.detail;
  if (status === 401) return "Please sign in again with your school's access code.";
  if (status === 429) return "Too many attempts: wait a minute, then try again.";
  if (status === 422) return "That does not look like an access code. Check it and try again.";
  return `Something went wrong on the server (error ${status}). Try again in a minute.`;
}

/** Exchange the school's access code for a ticket: `{ticket, school, expires_at}`. */
export function signIn(code) {
  return request("POST", "/api/school/sign-in", { body: { code } });
}

/** Today's remaining sessions: `{school, now, occurrences: [...]}`. */
export function todaysSessions(ticket) {
  return request("GET", "/api/school/sessions", { ticket });
}
