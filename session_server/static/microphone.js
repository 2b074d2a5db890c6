// The classroom microphone, opened with the browser's processing set for music.

const PREFERENCE_KEY = "twm.echoCancellation";

/**
 * Open the microphone. Automatic gain and noise suppression are off because both treat music
 * as noise to be flattened (a held note fades, a quiet verse is pumped up). Echo cancellation
 * stays on unless the teacher turns it off: a classroom's loudspeakers would otherwise send the
 * care home its own sound back.
 */
export function openMicrophone(echoCancellation) {
  if (!navigator.mediaDevices?.getUserMedia) {
    const error = new Error("no getUserMedia");
    error.name = "InsecureContext";
    return Promise.reject(error);
  }
  return navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation, autoGainControl: false, noiseSuppression: false },
    video: false,
  });
}

export function closeMicrophone(stream) {
  for (const track of stream?.getTracks() ?? []) track.stop();
}

/** What went wrong with the microphone, and what the teacher can do about it. */
export function microphoneProblem(error) {
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The browser did not allow the microphone. Click the microphone symbol in the address bar, choose Allow, then press Join again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Plug one in, then press Join again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone is busy in another program (Zoom or Teams, for example). Close that program, then press Join again.";
    case "InsecureContext":
      return "The browser only allows the microphone on a secure address (starting with https://). Ask your coordinator for the right address of this page.";
    default:
      return "The microphone could not be started. Check it is plugged in, then press Join again.";
  }
}

export function echoCancellationPreference() {
  return localStorage.getItem(PREFERENCE_KEY) !== "off";
}

export function rememberEchoCancellation(on) {
  localStorage.setItem(PREFERENCE_KEY, on ? "on" : "off");
}
