// The school page: sign in → today's sessions → a live session with the care home.
// This module wires the screens to the other modules; it holds no protocol of its own.

import { signIn, todaysSessions } from "./api.js";
import { Call } from "./call.js";
import { LevelMeter } from "./meter.js";
import { MidiLink, midiPermission } from "./midi.js";
import {
  closeMicrophone,
  echoCancellationPreference,
  microphoneProblem,
  openMicrophone,
  rememberEchoCancellation,
} from "./microphone.js";
import { REACTIONS, ReactionDisplay } from "./reactions.js";
import { Signalling } from "./signalling.js";
import { forgetTicket, loadTicket, saveTicket } from "./ticket.js";

// The server decides when a window opens (the classroom clock may be wrong), so the list is
// asked for again every so often rather than worked out here.
const REFRESH_MS = 20000;

const $ = (id) => document.getElementById(id);

let signedIn = null; // {ticket, school}
let signalling = null;
let occurrences = [];
let joiningRoom = null;
let refreshTimer = 0;
let call = null;
let microphone = null;
let midi = null; // MidiLink: the care home's instruments played here, the class's sent there
let audio = null; // {context, local: LevelMeter, remote: LevelMeter}
const stateHistory = []; // the call's recent states, for support staff and tests (window.twm)

const reactionDisplay = new ReactionDisplay($("incoming-reaction"), $("incoming-emoji"), $("incoming-words"));

// --- screens and messages ----------------------------------------------------------------------

function show(screen) {
  for (const section of document.querySelectorAll(".screen")) {
    section.hidden = section.id !== `screen-${screen}`;
  }
  $("who").hidden = screen === "sign-in";
  document.body.dataset.screen = screen;
}

function say(element, text, kind = "error") {
  element.textContent = sentence(text);
  element.className = `message ${kind}`;
  element.hidden = !text;
}

// --- signing in and out ------------------------------------------------------------------------

async function onSignIn(event) {
  event.preventDefault();
  const input = $("access-code");
  const message = $("sign-in-message");
  const code = input.value.trim();
  if (!code) {
    say(message, "Type your school's access code first.");
    input.focus();
    return;
  }
  $("sign-in-button").disabled = true;
  say(message, "Checking the code…", "info");
  try {
    const result = await signIn(code);
    saveTicket(result);
    input.value = "";
    say(message, "");
    enterSchool(result);
  } catch (error) {
    say(message, error.message);
    input.select();
  } finally {
    $("sign-in-button").disabled = false;
  }
}

function enterSchool(saved) {
  signedIn = saved;
  $("school-name").textContent = saved.school.name;
  signalling = new Signalling(saved.ticket);
  // The server sends the schedule on every (re)connection and whenever it changes; only a
  // change needs the list fetched again (it was fetched just now on opening the page).
  let lastSchedule = null;
  signalling.addEventListener("schedule", (event) => {
    const schedule = JSON.stringify(event.detail.occurrences);
    if (lastSchedule !== null && schedule !== lastSchedule) refreshSessions();
    lastSchedule = schedule;
  });
  signalling.addEventListener("refused", (event) => signInAgain(event.detail.message));
  signalling.start();
  showSessions();
}

/** Back to the first screen, e.g. when the ticket expired; `message` says why. */
function signInAgain(message, kind = "error") {
  endCall();
  signalling?.stop();
  signalling = null;
  forgetTicket();
  signedIn = null;
  occurrences = [];
  clearInterval(refreshTimer);
  show("sign-in");
  say($("sign-in-message"), message, kind);
  $("access-code").focus();
}

// --- today's sessions --------------------------------------------------------------------------

function showSessions(message = "") {
  show("sessions");
  say($("sessions-message"), message);
  refreshSessions();
  clearInterval(refreshTimer);
  refreshTimer = setInterval(refreshSessions, REFRESH_MS);
}

async function refreshSessions() {
  const ticket = signedIn?.ticket;
  if (!ticket || call) return;
  try {
    const today = await todaysSessions(ticket);
    if (ticket !== signedIn?.ticket) return;
    occurrences = today.occurrences ?? [];
    renderSessions();
  } catch (error) {
    if (error.signInAgain) signInAgain(error.message);
    else say($("sessions-message"), error.message);
  }
}

function renderSessions() {
  const list = $("sessions");
  list.replaceChildren(...occurrences.map(sessionCard));
  $("no-sessions").hidden = occurrences.length > 0;
}

function sessionCard(occurrence) {
  const item = document.createElement("li");
  item.className = "card session";
  item.dataset.room = occurrence.room;

  const about = document.createElement("div");
  about.append(
    paragraph("time", `${occurrence.starts_local} – ${occurrence.ends_local}`),
    paragraph("place", occurrence.care_home.name),
    paragraph("title", `${occurrence.title} · ${occurrence.day_local}`),
  );
  if (!occurrence.can_join && occurrence.refusal) {
    about.append(paragraph("why", sentence(occurrence.refusal)));
  }

  const join = document.createElement("button");
  join.type = "button";
  join.className = "primary join";
  const joiningThis = joiningRoom === occurrence.room;
  join.textContent = joiningThis ? "Joining…" : "Join";
  join.disabled = !occurrence.can_join || joiningRoom !== null;
  join.setAttribute("aria-label", `Join the session with ${occurrence.care_home.name} at ${occurrence.starts_local}`);
  join.addEventListener("click", () => joinSession(occurrence));

  item.append(about, join);
  return item;
}

/** The server writes its reasons in lower case ("this session opens at 13:45"): start them
 * with a capital for the screen. */
function sentence(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : "";
}

function paragraph(className, text) {
  const p = document.createElement("p");
  p.className = className;
  p.textContent = text;
  return p;
}

// --- a live session ----------------------------------------------------------------------------

async function joinSession(occurrence) {
  if (joiningRoom || call || !signalling) return;
  joiningRoom = occurrence.room;
  renderSessions();
  say($("sessions-message"), "Starting the microphone… If the browser asks, choose Allow.", "info");
  // Made inside the click: browsers only let a page start sound after a press.
  startAudio();
  const echoOn = echoCancellationPreference();
  try {
    microphone = await openMicrophone(echoOn);
  } catch (error) {
    stopJoining(microphoneProblem(error));
    return;
  }
  const attempt = new Call({ signalling, occurrence, microphone });
  attempt.addEventListener("state", (event) => paintState(event.detail.state, occurrence));
  attempt.addEventListener("remote-stream", (event) => hearCareHome(event.detail.stream));
  attempt.addEventListener("channel", (event) => enableReactions(event.detail.open));
  attempt.addEventListener("reaction", (event) =>
    reactionDisplay.show(event.detail.kind, occurrence.care_home.name),
  );
  const instruments = new MidiLink({ context: audio.context, call: attempt });
  instruments.addEventListener("change", () => paintInstruments(instruments));
  attempt.addEventListener("midi", (event) => instruments.receive(event.detail.data));
  attempt.addEventListener("midi-channel", (event) => {
    // The care home's side went away (or a new connection replaced the old): no note may hang.
    if (!event.detail.open) instruments.release();
  });
  attempt.addEventListener("ended", (event) => {
    if (call !== attempt) return; // Leave pressed here: already handled
    endCall();
    showSessions(event.detail.message ?? "");
  });
  try {
    await attempt.join();
  } catch (error) {
    instruments.close();
    stopJoining(error.message);
    refreshSessions();
    return;
  }
  call = attempt;
  midi = instruments;
  paintInstruments(midi);
  openInstruments(midi);
  joiningRoom = null;
  clearInterval(refreshTimer);
  $("echo-cancellation").checked = echoOn;
  $("call-with").textContent = `${occurrence.title} with ${occurrence.care_home.name}, ${occurrence.starts_local} – ${occurrence.ends_local}`;
  say($("call-message"), "");
  paintState(call.state, occurrence);
  audio.local.follow(microphone);
  show("call");
  $("leave").focus();
}

function stopJoining(message) {
  closeMicrophone(microphone);
  microphone = null;
  joiningRoom = null;
  renderSessions();
  say($("sessions-message"), message);
}

function startAudio() {
  if (!audio) {
    const context = new AudioContext();
    audio = {
      context,
      local: new LevelMeter(context, $("meter-local")),
      remote: new LevelMeter(context, $("meter-remote")),
    };
  }
  audio.context.resume().catch(() => {});
}

function stateWords(state, occurrence) {
  const careHome = occurrence.care_home.name;
  switch (state) {
    case "joining":
      return ["Joining…", ""];
    case "waiting":
      return [`Waiting for ${careHome}…`, "Stay on this page. The session starts as soon as the care home joins."];
    case "connecting":
      return [`Connecting to ${careHome}…`, ""];
    case "live":
      return ["Live", `${careHome} can hear your class.`];
    case "reconnecting":
      return ["Reconnecting…", "The connection was interrupted. The page is trying again by itself."];
    case "peer-left":
      return ["The care home has left", "They can come back while the session is open. Press Leave to go back to the list."];
    default:
      return ["The session has ended", ""];
  }
}

function paintState(state, occurrence) {
  stateHistory.push(state);
  stateHistory.splice(0, stateHistory.length - 50);
  const [words, help] = stateWords(state, occurrence);
  $("call-state").dataset.state = state;
  $("call-state-words").textContent = words;
  $("call-state-help").textContent = help;
}

function hearCareHome(stream) {
  const speaker = $("remote-audio");
  speaker.srcObject = stream;
  // Chrome feeds a remote track to WebAudio only while a media element plays it, so the
  // meter follows the same stream the speaker plays.
  audio?.remote.follow(stream);
  if (!stream) return;
  speaker.play().then(
    () => ($("unmute-speaker").hidden = true),
    () => ($("unmute-speaker").hidden = false),
  );
}

/** Web MIDI at once when the browser already allows it; otherwise a button, so the browser's
 * prompt comes only when the teacher asked for it. */
async function openInstruments(link) {
  const permission = await midiPermission();
  if (link !== midi) return;
  if (permission === "granted") {
    await link.start();
    paintInstruments(link);
    return;
  }
  $("midi-connect").hidden = permission !== "prompt";
  $("midi-connect").disabled = false;
  if (permission === "denied") say($("midi-message"), "This browser blocks MIDI instruments: the on-screen synth plays.", "info");
}

async function connectInstruments() {
  const link = midi;
  if (!link) return;
  const button = $("midi-connect");
  button.disabled = true;
  say($("midi-message"), "If the browser asks, choose Allow.", "info");
  const opened = await link.start();
  if (link !== midi) return;
  button.hidden = opened;
  button.disabled = false;
  say($("midi-message"), opened ? "" : "The browser did not allow MIDI instruments: the on-screen synth plays.", "info");
  paintInstruments(link);
}

function paintInstruments(link) {
  if (link !== midi) return;
  $("midi-instrument").textContent = link.instrumentName;
  const played = link.notesPlayed;
  $("midi-notes").textContent = `${played} ${played === 1 ? "note" : "notes"} played`;
  $("midi-notes").dataset.count = String(played);
  const inputs = link.inputNames;
  const sent = link.notesSent;
  const names = inputs.length ? inputs.join(", ") : "none plugged in";
  $("midi-inputs").textContent = sent ? `${names} · ${sent} ${sent === 1 ? "note" : "notes"} sent` : names;
}

function enableReactions(open) {
  for (const button of document.querySelectorAll(".reaction")) button.disabled = !open;
}

function sendReaction(button) {
  if (!call?.sendReaction(button.dataset.kind)) return;
  // Say it went: a projector washes out a colour change, a word it does not.
  const word = button.querySelector(".word");
  word.textContent = "Sent!";
  button.classList.add("sent");
  clearTimeout(button.sentTimer);
  button.sentTimer = setTimeout(() => {
    word.textContent = REACTIONS[button.dataset.kind].word;
    button.classList.remove("sent");
  }, 1200);
}

async function switchEchoCancellation(event) {
  const on = event.target.checked;
  rememberEchoCancellation(on);
  if (!call) return;
  // Browsers apply one set of processing per open microphone, so the old one is closed
  // before the new one is opened with the other setting.
  const old = microphone;
  closeMicrophone(old);
  try {
    microphone = await openMicrophone(on);
  } catch (error) {
    microphone = null;
    say($("call-message"), microphoneProblem(error));
    return;
  }
  if (!call) {
    closeMicrophone(microphone);
    return;
  }
  say($("call-message"), "");
  await call.replaceMicrophone(microphone);
  audio.local.follow(microphone);
}

function leave() {
  endCall();
  showSessions();
}

function endCall() {
  const ending = call;
  call = null;
  ending?.leave();
  midi?.close();
  midi = null;
  $("midi-connect").hidden = true;
  say($("midi-message"), "");
  closeMicrophone(microphone);
  microphone = null;
  audio?.local.stop();
  audio?.remote.stop();
  $("remote-audio").srcObject = null;
  $("unmute-speaker").hidden = true;
  reactionDisplay.clear();
  enableReactions(false);
}

// --- wiring ------------------------------------------------------------------------------------

$("sign-in-form").addEventListener("submit", onSignIn);
$("sign-out").addEventListener("click", () => signInAgain("You have signed out.", "info"));
$("leave").addEventListener("click", leave);
$("midi-connect").addEventListener("click", connectInstruments);
$("echo-cancellation").addEventListener("change", switchEchoCancellation);
$("unmute-speaker").addEventListener("click", () => $("remote-audio").play().then(() => ($("unmute-speaker").hidden = true)));
for (const button of document.querySelectorAll(".reaction")) {
  button.addEventListener("click", () => sendReaction(button));
}
window.addEventListener("pagehide", () => call?.leave());

// A small window for tests and for support staff at the browser console: read-only figures.
window.twm = {
  stats: async () => (call ? await call.stats() : null),
  states: () => [...stateHistory],
  signalling: () => (signalling?.connected ? "connected" : "not connected"),
  levels: () => ({ local: audio?.local.level ?? 0, remote: audio?.remote.level ?? 0 }),
  microphone: () => microphone?.getAudioTracks()[0]?.getSettings() ?? null,
  midi: () =>
    midi && {
      instrument: midi.instrumentName,
      channelOpen: call?.midiChannelOpen ?? false,
      notesPlayed: midi.notesPlayed,
      notesSent: midi.notesSent,
      rejected: midi.rejected,
      sounding: midi.sounding,
      voices: midi.synth.voices,
      peak: midi.synth.peak,
    },
};

const saved = loadTicket();
if (saved) {
  enterSchool(saved);
} else {
  show("sign-in");
  $("access-code").focus();
}
