// MIDI across the link on the school page: the care home's instruments played here, and the
// class's own instruments (Web MIDI inputs) sent there.
//
//   const midi = new MidiLink({ context, call });      // call: sendMidi(text), "midi" events
//   // Web MIDI when the browser allows it (else a button calls start(): it may prompt);
//   // until an output is found, the WebAudio synth plays.
//   if ((await midiPermission()) === "granted") await midi.start();
//   call.addEventListener("midi", (e) => midi.receive(e.detail.data));
//   call.addEventListener("midi-channel", (e) => e.detail.open || midi.release());
//
// The wire is session_server/protocol.py's "MIDI over the data channel": a JSON MidiEvents batch
// {"type":"midi","events":[{"t_ms":…,"data":[status, data…]}]}, t_ms on the sender's monotonic
// clock. The timing follows device/midi/playout.py and the release device/midi/sounding.py, so a
// note sounds the same wherever it is played.

export const MIDI_DATA_CHANNEL_LABEL = "twm-midi"; // protocol.MIDI_DATA_CHANNEL_LABEL
export const MAX_MIDI_EVENTS = 256; // protocol.MAX_MIDI_EVENTS
const MAX_T_MS = 2 ** 53; // protocol.MidiEvent.t_ms's bound
// Data bytes after each channel-voice status (high nibble): protocol.CHANNEL_VOICE_DATA_BYTES.
export const CHANNEL_VOICE_DATA_BYTES = Object.freeze({
  0x80: 2, // note off
  0x90: 2, // note on (velocity 0 means note off)
  0xa0: 2, // polyphonic aftertouch
  0xb0: 2, // control change
  0xc0: 1, // program change
  0xd0: 1, // channel aftertouch
  0xe0: 2, // pitch bend
});

// device/midi/playout.py's figures, so both ends of a session keep the same rhythm.
export const DEFAULT_DELAY_MS = 20;
export const LATE_NOTE_ON_MS = 150;
export const OFFSET_WINDOW_MS = 5000;
const MAX_PENDING = 2048;

const SUSTAIN = 64;
const ALL_SOUND_OFF = 120;
const ALL_NOTES_OFF = 123;
const MIDI_ACCESS_PATIENCE_MS = 3000; // a permission prompt nobody answers must not hold the page

// --- validation -------------------------------------------------------------------------------

/** Whether `data` is one whole channel-voice message (what may travel and what may be played). */
export function isChannelVoice(data) {
  if (!Array.isArray(data) && !ArrayBuffer.isView(data)) return false;
  const bytes = Array.from(data);
  if (!bytes.every((byte) => Number.isInteger(byte) && byte >= 0 && byte <= 255)) return false;
  const status = bytes[0];
  const expected = status >= 0x80 ? CHANNEL_VOICE_DATA_BYTES[status & 0xf0] : undefined;
  if (expected === undefined || bytes.length !== 1 + expected) return false;
  return bytes.slice(1).every((byte) => byte <= 0x7f);
}

function isPlainObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function onlyKeys(object, allowed) {
  return Object.keys(object).every((key) => allowed.includes(key));
}

function validEvent(event) {
  // The protocol's model forbids unknown fields, as here. It is stricter than pydantic's lax
  // mode in one way only: "60" or true where a number belongs is refused, not coerced (no
  // honest sender writes them, and guessing what a peer meant is how stuck notes start).
  if (!isPlainObject(event) || !onlyKeys(event, ["t_ms", "data"])) return false;
  const t = event.t_ms;
  if (typeof t !== "number" || !Number.isFinite(t) || t < 0 || t > MAX_T_MS) return false;
  return Array.isArray(event.data) && isChannelVoice(event.data);
}

/** The events of one data-channel message, or null when it is not a valid MidiEvents batch.
 * Like the box (device/midi/wire.py), one bad event refuses the whole batch: a batch is what
 * one sender wrote at once, and half of it played is not what was played. Never throws. */
export function parseMidiEvents(text) {
  if (typeof text !== "string") return null;
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isPlainObject(message) || !onlyKeys(message, ["type", "events"])) return null;
  if (message.type !== "midi" || !Array.isArray(message.events)) return null;
  const events = message.events;
  if (events.length < 1 || events.length > MAX_MIDI_EVENTS || !events.every(validEvent)) return null;
  return events.map((event) => ({ t_ms: event.t_ms, data: [...event.data] }));
}

// --- timing -----------------------------------------------------------------------------------

function isNoteOn(data) {
  return (data[0] & 0xf0) === 0x90 && data[2] > 0;
}

/** Holds received messages until they are due: each plays at its sender's time plus the
 * smallest recent arrival − send offset plus a steady delay, so bunched packets keep their
 * rhythm (the reasoning is in device/midi/playout.py). `clock` gives ms (tests pass their own). */
export class Playout {
  delayMs;
  lateMs;
  droppedLate = 0; // note-ons dropped for being too late
  playedLate = 0; // messages played at once because they came after their time

  #clock;
  #windowMs;
  #queue = [];
  #lastDue = -Infinity;
  #windowStart = null;
  #windowMin = Infinity;
  #previousMin = Infinity;

  constructor({
    delayMs = DEFAULT_DELAY_MS,
    lateMs = LATE_NOTE_ON_MS,
    windowMs = OFFSET_WINDOW_MS,
    clock = () => performance.now(),
  } = {}) {
    this.delayMs = delayMs;
    this.lateMs = lateMs;
    this.#windowMs = windowMs;
    this.#clock = clock;
  }

  /** Receiver time minus sender time of the fastest recent trip; null before any. */
  get offsetMs() {
    const best = Math.min(this.#windowMin, this.#previousMin);
    return Number.isFinite(best) ? best : null;
  }

  get pending() {
    return this.#queue.length;
  }

  /** A message the sender played at `tMs` (its clock) has arrived now. */
  receive(tMs, data) {
    const now = this.#clock();
    const offset = this.#observe(now, now - tMs);
    const onTime = tMs + offset + this.delayMs;
    const lateness = now - onTime;
    // A stale note-on after an outage is a noise nobody played; its note-off still plays.
    if (lateness > this.lateMs && isNoteOn(data)) {
      this.droppedLate += 1;
      return;
    }
    if (lateness > 0) this.playedLate += 1;
    // Never before a message sent earlier: the offset can shrink between two messages.
    const due = Math.max(onTime, this.#lastDue);
    this.#lastDue = due;
    this.#queue.push({ due, data });
  }

  /** The messages due by now, in order (removed from the queue). */
  due() {
    const now = this.#clock();
    const ready = [];
    while (this.#queue.length && (this.#queue[0].due <= now || this.#queue.length > MAX_PENDING)) {
      ready.push(this.#queue.shift().data);
    }
    return ready;
  }

  /** When the next message is due (receiver's clock), or null when none waits. */
  nextDueMs() {
    return this.#queue.length ? this.#queue[0].due : null;
  }

  /** Forget everything: a new link may mean a new peer with a clock of its own. */
  reset() {
    this.#queue = [];
    this.#lastDue = -Infinity;
    this.#windowStart = null;
    this.#windowMin = this.#previousMin = Infinity;
  }

  #observe(now, tripMs) {
    // A sliding minimum (one to two windows), not an all-time one: clocks drift and routes
    // change mid-session, and an old minimum would make every note later and later.
    if (this.#windowStart === null || now - this.#windowStart >= this.#windowMs) {
      const start = this.#windowStart;
      const recent = start !== null && now - start < 2 * this.#windowMs;
      this.#previousMin = recent ? this.#windowMin : Infinity;
      this.#windowStart = now;
      this.#windowMin = Infinity;
    }
    this.#windowMin = Math.min(this.#windowMin, tripMs);
    return Math.min(this.#windowMin, this.#previousMin);
  }
}

// --- what is sounding -------------------------------------------------------------------------

/** The notes one stream of messages has left sounding, so they can all be released when the
 * music stops short (device/midi/sounding.py): a note-off for each, then on every channel used
 * sustain off (a held pedal keeps released notes ringing) and all notes off. */
export class SoundingNotes {
  #notes = new Map(); // "channel:note" → [channel, note], in played order
  #channels = new Set();

  get count() {
    return this.#notes.size;
  }

  observe(data) {
    const kind = data[0] & 0xf0;
    const channel = data[0] & 0x0f;
    this.#channels.add(channel);
    const key = `${channel}:${data[1]}`;
    if (kind === 0x90 && data[2] > 0) this.#notes.set(key, [channel, data[1]]);
    else if (kind === 0x90 || kind === 0x80) this.#notes.delete(key);
  }

  /** The messages that silence everything observed, and forget it all. */
  release() {
    const messages = [...this.#notes.values()].map(([channel, note]) => [0x80 | channel, note, 0]);
    for (const channel of [...this.#channels].sort((a, b) => a - b)) {
      messages.push([0xb0 | channel, SUSTAIN, 0], [0xb0 | channel, ALL_NOTES_OFF, 0]);
    }
    this.#notes.clear();
    this.#channels.clear();
    return messages;
  }
}

// --- instruments ------------------------------------------------------------------------------

const SYNTH_VOICES = 12; // a few hands' worth; the oldest voice gives way to a new note
const SYNTH_PEAK = 0.18; // one full-velocity voice: several together stay below clipping
const ATTACK_S = 0.005;
const DECAY_S = 0.25;
const SUSTAIN_LEVEL = 0.6;
const RELEASE_S = 0.12;
const BEND_CENTS = 200; // the General MIDI default pitch-bend range

/** A small WebAudio synth for when the classroom has no MIDI instrument: one triangle
 * oscillator per note with an attack–decay–sustain–release envelope, velocity → loudness,
 * sustain pedal, pitch bend and all-notes-off. */
export class WebAudioSynth {
  name = "on-screen synth";

  #context;
  #output;
  #analyser;
  #samples;
  #voices = new Map(); // "channel:note" → voice, oldest first
  #held = new Set(); // keys released while the sustain pedal was down
  #pedal = new Set(); // channels whose sustain pedal is down
  #bend = new Map(); // channel → cents

  constructor(context, destination = context.destination) {
    this.#context = context;
    this.#output = context.createGain();
    this.#analyser = context.createAnalyser();
    this.#analyser.fftSize = 1024;
    this.#samples = new Float32Array(this.#analyser.fftSize);
    this.#output.connect(this.#analyser);
    this.#output.connect(destination);
  }

  /** Notes sounding now (a released note in its fade no longer counts). */
  get voices() {
    return this.#voices.size;
  }

  /** The loudest sample the synth is putting out right now (0–1), from its own analyser. */
  get peak() {
    this.#analyser.getFloatTimeDomainData(this.#samples);
    let peak = 0;
    for (const sample of this.#samples) peak = Math.max(peak, Math.abs(sample));
    return peak;
  }

  send(data) {
    const kind = data[0] & 0xf0;
    const channel = data[0] & 0x0f;
    if (kind === 0x90 && data[2] > 0) this.#noteOn(channel, data[1], data[2]);
    else if (kind === 0x90 || kind === 0x80) this.#noteOff(channel, data[1]);
    else if (kind === 0xb0) this.#control(channel, data[1], data[2]);
    else if (kind === 0xe0) this.#pitchBend(channel, ((data[2] << 7) | data[1]) - 8192);
    // Program change and aftertouch: one timbre, no pressure; nothing to do.
  }

  /** Silence every voice at once (the link ended: no note may outlive it). */
  allNotesOff() {
    for (const key of [...this.#voices.keys()]) this.#stop(key);
    this.#held.clear();
    this.#pedal.clear();
    this.#bend.clear();
  }

  #noteOn(channel, note, velocity) {
    const key = `${channel}:${note}`;
    if (this.#voices.has(key)) this.#stop(key); // the same key struck again: restart it
    while (this.#voices.size >= SYNTH_VOICES) this.#stop(this.#voices.keys().next().value);
    const now = this.#context.currentTime;
    const oscillator = this.#context.createOscillator();
    oscillator.type = "triangle";
    oscillator.frequency.value = 440 * 2 ** ((note - 69) / 12);
    oscillator.detune.value = this.#bend.get(channel) ?? 0;
    const gain = this.#context.createGain();
    const peak = SYNTH_PEAK * (velocity / 127) ** 1.5; // loudness grows faster than velocity
    gain.gain.setValueAtTime(0, now);
    gain.gain.linearRampToValueAtTime(peak, now + ATTACK_S);
    gain.gain.setTargetAtTime(peak * SUSTAIN_LEVEL, now + ATTACK_S, DECAY_S / 3);
    oscillator.connect(gain).connect(this.#output);
    oscillator.start(now);
    this.#held.delete(key);
    this.#voices.set(key, { channel, oscillator, gain });
  }

  #noteOff(channel, note) {
    const key = `${channel}:${note}`;
    if (!this.#voices.has(key)) return;
    if (this.#pedal.has(channel)) this.#held.add(key);
    else this.#stop(key);
  }

  #control(channel, control, value) {
    if (control === SUSTAIN) {
      if (value >= 64) {
        this.#pedal.add(channel);
        return;
      }
      this.#pedal.delete(channel);
      for (const key of [...this.#held]) {
        if (this.#voices.get(key)?.channel === channel) this.#stop(key);
      }
    } else if (control === ALL_NOTES_OFF || control === ALL_SOUND_OFF) {
      for (const [key, voice] of [...this.#voices]) if (voice.channel === channel) this.#stop(key);
    }
  }

  #pitchBend(channel, bend) {
    const cents = (bend / 8192) * BEND_CENTS;
    this.#bend.set(channel, cents);
    const now = this.#context.currentTime;
    for (const voice of this.#voices.values()) {
      if (voice.channel === channel) voice.oscillator.detune.setTargetAtTime(cents, now, 0.005);
    }
  }

  #stop(key) {
    const voice = this.#voices.get(key);
    if (!voice) return;
    this.#voices.delete(key);
    this.#held.delete(key);
    const now = this.#context.currentTime;
    // Fade from wherever the envelope is, so a released note does not click.
    voice.gain.gain.cancelScheduledValues(now);
    voice.gain.gain.setValueAtTime(voice.gain.gain.value, now);
    voice.gain.gain.setTargetAtTime(0, now, RELEASE_S / 4);
    voice.oscillator.stop(now + RELEASE_S * 2);
    voice.oscillator.addEventListener("ended", () => voice.gain.disconnect(), { once: true });
  }
}

/** A Web MIDI output (a USB keyboard or sound module in the classroom). */
class MidiOutputInstrument {
  constructor(output) {
    this.output = output;
    this.name = output.name || "MIDI instrument";
  }

  send(data) {
    try {
      this.output.send(data);
    } catch (error) {
      // Unplugged mid-session: Web MIDI throws; the next "statechange" picks another instrument.
      console.warn("the MIDI instrument refused a message", error);
    }
  }

  allNotesOff() {
    // The SoundingNotes release already sent note-offs and CC 123; CC 120 also cuts the tails
    // of sounds this page never saw start, on every channel.
    for (let channel = 0; channel < 16; channel++) this.send([0xb0 | channel, ALL_SOUND_OFF, 0]);
  }
}

/** "Midi Through" is ALSA's loopback port: notes sent there are heard by nobody. */
function usableOutput(output) {
  return output.state !== "disconnected" && !/midi through/i.test(output.name ?? "");
}

function usableInput(input) {
  return input.state !== "disconnected" && !/midi through/i.test(input.name ?? "");
}

/** Whether the browser lets this page use MIDI instruments: "granted", "prompt" (it would ask
 * the teacher), "denied", or "unsupported". Asking opens a browser prompt, so the page asks only
 * when the teacher presses "Use a MIDI instrument", never by surprise while joining. */
export async function midiPermission() {
  if (typeof navigator.requestMIDIAccess !== "function") return "unsupported";
  try {
    return (await navigator.permissions.query({ name: "midi", sysex: false })).state;
  } catch {
    return "prompt"; // a browser that cannot say: asking is the only way to know
  }
}

/** Web MIDI access when the browser has it and the teacher allows it, else null (never throws,
 * never waits for a prompt for ever). */
async function midiAccess() {
  if (typeof navigator.requestMIDIAccess !== "function") return null;
  let timer = 0;
  const patience = new Promise((resolve) => (timer = setTimeout(() => resolve(null), MIDI_ACCESS_PATIENCE_MS)));
  try {
    return await Promise.race([navigator.requestMIDIAccess({ sysex: false }), patience]);
  } catch {
    return null; // refused, or no MIDI on this computer: the synth plays instead
  } finally {
    clearTimeout(timer);
  }
}

// --- the link ---------------------------------------------------------------------------------

/** Plays what the care home sends and sends what the class plays, over one call.
 *
 * Events: "change" whenever the instrument, the counters or the voices change (for the page's
 * indication). `notesPlayed` counts note-ons played here; `rejected` counts batches refused. */
export class MidiLink extends EventTarget {
  notesPlayed = 0;
  notesSent = 0;
  rejected = 0;

  #synth;
  #instrument;
  #access = null;
  #call;
  #playout;
  #sounding = new SoundingNotes();
  #timer = 0;
  #outbox = [];
  #flushing = false;
  #inputs = new Set();
  #closed = false;

  constructor({ context, call, playout = new Playout() }) {
    super();
    this.#synth = new WebAudioSynth(context);
    this.#instrument = this.#synth;
    this.#call = call;
    this.#playout = playout;
  }

  /** What plays the care home's notes: the on-screen synth or a Web MIDI device's name. */
  get instrumentName() {
    return this.#instrument.name;
  }

  get synth() {
    return this.#synth;
  }

  get sounding() {
    return this.#sounding.count;
  }

  get inputNames() {
    return [...this.#inputs].map((input) => input.name || "MIDI instrument");
  }

  /** Whether Web MIDI has been opened (instruments are looked for and followed). */
  get started() {
    return this.#access !== null;
  }

  /** Look for Web MIDI instruments; the synth plays until (and unless) one is found. True when
   * the browser gave access (with or without an instrument plugged in). */
  async start() {
    if (this.#access) return true;
    const access = await midiAccess();
    if (this.#closed || !access) return false;
    this.#access = access;
    access.addEventListener("statechange", () => this.#choose());
    this.#choose();
    return true;
  }

  /** One data-channel message from the care home. Bad data is counted, never thrown. */
  receive(text) {
    if (this.#closed) return;
    const events = parseMidiEvents(text);
    if (!events) {
      this.rejected += 1;
      this.#changed();
      return;
    }
    for (const event of events) this.#playout.receive(event.t_ms, event.data);
    this.#schedule();
  }

  /** The MIDI channel closed or the call ended: every note sounding here stops, nothing held
   * plays later, and nothing the class played before is sent late. */
  release() {
    clearTimeout(this.#timer);
    this.#timer = 0;
    this.#playout.reset();
    this.#outbox = [];
    for (const data of this.#sounding.release()) this.#instrument.send(data);
    this.#instrument.allNotesOff();
    if (this.#instrument !== this.#synth) this.#synth.allNotesOff();
    this.#changed();
  }

  /** The call is over: release, and stop listening to the class's instruments. */
  close() {
    this.release();
    this.#closed = true;
    for (const input of this.#inputs) input.removeEventListener("midimessage", this.#onInput);
    this.#inputs.clear();
  }

  // --- playing --------------------------------------------------------------------------------

  #schedule() {
    clearTimeout(this.#timer);
    this.#timer = 0;
    for (const data of this.#playout.due()) this.#play(data);
    const next = this.#playout.nextDueMs();
    if (next !== null) {
      this.#timer = setTimeout(() => this.#schedule(), Math.max(0, next - performance.now()));
    }
  }

  #play(data) {
    this.#sounding.observe(data);
    this.#instrument.send(data);
    if (isNoteOn(data)) this.notesPlayed += 1;
    this.#changed();
  }

  #choose() {
    if (this.#closed) return; // a device plugged in after the call: the next call finds it
    const outputs = [...(this.#access?.outputs.values() ?? [])].filter(usableOutput);
    const chosen = outputs[0] ?? null;
    const current = this.#instrument;
    const same = chosen ? current.output === chosen : current === this.#synth;
    if (!same) {
      // Notes begun on the old instrument end there, or they would hang on it.
      for (const data of this.#sounding.release()) current.send(data);
      current.allNotesOff();
      this.#instrument = chosen ? new MidiOutputInstrument(chosen) : this.#synth;
    }
    const inputs = new Set([...(this.#access?.inputs.values() ?? [])].filter(usableInput));
    for (const input of this.#inputs) {
      if (!inputs.has(input)) input.removeEventListener("midimessage", this.#onInput);
    }
    for (const input of inputs) {
      if (!this.#inputs.has(input)) input.addEventListener("midimessage", this.#onInput);
    }
    this.#inputs = inputs;
    this.#changed();
  }

  // --- sending --------------------------------------------------------------------------------

  #onInput = (event) => {
    if (this.#closed || !isChannelVoice(event.data)) return; // clock, sysex, sensing stay here
    // Web MIDI stamps each message on the performance.now() clock: the sender's monotonic ms.
    const t = Math.max(0, event.timeStamp ?? performance.now());
    this.#outbox.push({ t_ms: t, data: Array.from(event.data) });
    // Messages that arrive in one task (a chord) travel in one batch.
    if (!this.#flushing) {
      this.#flushing = true;
      queueMicrotask(() => this.#flush());
    }
  };

  #flush() {
    this.#flushing = false;
    const events = this.#outbox.splice(0);
    for (let start = 0; start < events.length; start += MAX_MIDI_EVENTS) {
      const batch = events.slice(start, start + MAX_MIDI_EVENTS);
      // A closed channel drops the batch: notes played into a dead link must not burst out
      // when it comes back.
      if (this.#call.sendMidi(JSON.stringify({ type: "midi", events: batch }))) {
        this.notesSent += batch.filter((event) => isNoteOn(event.data)).length;
      }
    }
    this.#changed();
  }

  #changed() {
    this.dispatchEvent(new Event("change"));
  }
}
