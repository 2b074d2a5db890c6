// One session with the care home: the room, the WebRTC peer connection, and its data channel.
//
// Who offers: whoever joins the room second (the server's "joined" says peer_present). An offer
// that arrives at any time replaces the current peer connection, because the care-home box
// (aiortc) cannot restart ICE: after a lost link it builds a new connection with a new offer.
//
// Events: "state" (detail {state}), "remote-stream" (detail {stream} or null), "channel"
// (detail {open}), "reaction" (detail {kind}), "midi-channel" (detail {open}), "midi" (detail
// {data}: one message's text from the MIDI channel, for midi.js to check), "ended" (detail
// {message}).
//
// MIDI has a data channel of its own ("twm-midi", ordered and reliable: a lost note-off is a
// stuck note), so a burst of notes never queues in front of the heartbeats on "twm".
// States: joining, waiting, connecting, live, reconnecting, peer-left, ended.

import { MIDI_DATA_CHANNEL_LABEL } from "./midi.js";
import { tuneOpusForMusic } from "./opus.js";
import { isReactionKind } from "./reactions.js";

const DATA_CHANNEL_LABEL = "twm"; // protocol.DATA_CHANNEL_LABEL
const HEARTBEAT_MS = 1000;
const QUIET_MS = 5000; // no word from the care home for this long: show "Reconnecting…"
const DEAD_MS = 15000; // ... and for this long: build a new connection
const ANSWERER_PATIENCE_MS = 10000; // a failed link the offerer has not rebuilt: rebuild it ourselves
const REBUILD_GAP_MS = 5000; // never start new connections faster than this
const GATHER_LIMIT_MS = 5000; // aiortc does not trickle well: send the SDP with its candidates
// Errors about our room that end the session (the window closed, the session was cancelled…).
const ENDING_CODES = new Set(["closed", "cancelled", "replaced", "not_your_session", "no_such_room"]);

export class Call extends EventTarget {
  state = "joining";
  remoteStream = null;

  #signalling;
  #occurrence;
  #room;
  #microphone;
  #iceServers = [];
  #pc = null;
  #channel = null;
  #midiChannel = null;
  #heartbeatHeard = false; // judge silence only by a peer that does send heartbeats
  #joined = false;
  #peerPresent = false;
  #peerLeft = false;
  #ended = false;
  #weOffered = false;
  #trickle = false;
  #pendingCandidates = [];
  #heartbeatSeq = 0;
  #lastHeard = 0;
  #failedSince = 0;
  #lastRebuild = 0;
  #wasConnected = false; // this peer connection has carried the session at least once
  #everLive = false; // so a new connection after a loss reads "Reconnecting…", not "Connecting…"
  #linkUp = false;
  #route = "unknown";
  #ticker = 0;
  #listening = new AbortController();

  constructor({ signalling, occurrence, microphone }) {
    super();
    this.#signalling = signalling;
    this.#occurrence = occurrence;
    this.#room = occurrence.room;
    this.#microphone = microphone;
  }

  get occurrence() {
    return this.#occurrence;
  }

  get channelOpen() {
    return this.#channel?.readyState === "open";
  }

  /** Enter the room. Throws the server's JoinRefused when it says no. */
  async join() {
    this.#listen();
    let joined;
    try {
      joined = await this.#signalling.join(this.#room);
    } catch (error) {
      this.#listening.abort();
      throw error;
    }
    this.#ticker = setInterval(() => this.#tick(), HEARTBEAT_MS);
    this.#onJoined(joined);
  }

  /** The teacher pressed Leave. */
  leave() {
    if (this.#ended) return;
    if (this.#joined) this.#signalling.send({ type: "leave", room: this.#room });
    this.#finish();
  }

  get midiChannelOpen() {
    return this.#midiChannel?.readyState === "open";
  }

  /** One MidiEvents batch (JSON text) to the care home; false when the MIDI channel is not open
   * (the batch is dropped: notes must not arrive late after the link is back). */
  sendMidi(text) {
    if (!this.midiChannelOpen) return false;
    this.#midiChannel.send(text);
    return true;
  }

  sendReaction(kind) {
    if (!isReactionKind(kind) || !this.channelOpen) return false;
    this.#channel.send(JSON.stringify({ type: "reaction", kind }));
    return true;
  }

  /** Use a newly opened microphone (echo cancellation switched) without renegotiating. */
  async replaceMicrophone(stream) {
    this.#microphone = stream;
    const track = stream.getAudioTracks()[0] ?? null;
    for (const transceiver of this.#pc?.getTransceivers() ?? []) {
      if (transceiver.receiver.track?.kind === "audio") await transceiver.sender.replaceTrack(track);
    }
  }

  /** Packet counts and route, from the browser's own statistics (also a test hook). */
  async stats() {
    const pc = this.#pc;
    const result = {
      state: this.state,
      connectionState: pc?.connectionState ?? "none",
      channel: this.#channel?.readyState ?? "none",
      packetsReceived: 0,
      packetsSent: 0,
      bytesReceived: 0,
      bytesSent: 0,
      audioEnergyReceived: 0,
      route: "unknown",
    };
    if (!pc) return result;
    const report = await pc.getStats();
    report.forEach((entry) => {
      if (entry.kind !== "audio") return;
      if (entry.type === "inbound-rtp") {
        result.packetsReceived += entry.packetsReceived ?? 0;
        result.bytesReceived += entry.bytesReceived ?? 0;
        result.audioEnergyReceived += entry.totalAudioEnergy ?? 0;
      } else if (entry.type === "outbound-rtp") {
        result.packetsSent += entry.packetsSent ?? 0;
        result.bytesSent += entry.bytesSent ?? 0;
      }
    });
    result.route = routeFrom(report);
    return result;
  }

  // --- signalling ---------------------------------------------------------------------------

  #listen() {
    const on = (type, handler) =>
      this.#signalling.addEventListener(type, handler, { signal: this.#listening.signal });
    const ours = (handler) => (event) => {
      if (event.detail?.room === this.#room) handler(event.detail);
    };
    on("welcome", () => this.#rejoin());
    on("down", () => this.#refresh());
    on("presence", ours((message) => this.#onPresence(message)));
    on("offer", ours((message) => this.#answer(message.sdp)));
    on("answer", ours((message) => this.#onAnswer(message.sdp)));
    on("candidate", ours((message) => this.#onCandidate(message)));
    on("error", ours((message) => this.#onError(message)));
  }

  #onJoined(joined) {
    this.#joined = true;
    this.#iceServers = joined.ice_servers ?? [];
    this.#peerPresent = Boolean(joined.peer_present);
    this.#peerLeft = false;
    if (this.#peerPresent) this.#offer();
    else this.#closePeer();
    this.#refresh();
  }

  /** The signalling connection came back after a drop: enter the room again. */
  async #rejoin() {
    if (!this.#joined || this.#ended) return;
    try {
      this.#onJoined(await this.#signalling.join(this.#room));
    } catch (error) {
      if (ENDING_CODES.has(error.code)) this.#finish(error.message);
      // Otherwise the connection dropped again; the next "welcome" tries once more.
    }
  }

  #onPresence(message) {
    const self = this.#signalling.party;
    if (self && message.party?.kind === self.kind && message.party?.id === self.id) return;
    if (message.present) {
      // The rule: the care home joined second, so it sends the offer; we wait for it.
      this.#peerPresent = true;
      this.#peerLeft = false;
    } else {
      this.#peerPresent = false;
      this.#peerLeft = true;
      this.#everLive = false;
      this.#closePeer();
    }
    this.#refresh();
  }

  #onError(message) {
    if (this.#ended) return;
    if (message.code === "not_in_room") {
      this.#rejoin();
    } else if (ENDING_CODES.has(message.code)) {
      this.#finish(message.message);
    } else if (message.code !== "peer_absent") {
      console.warn("signalling error", message.code, message.message);
    }
  }

  // --- the peer connection ------------------------------------------------------------------

  #newPeer() {
    this.#closePeer();
    const pc = new RTCPeerConnection({ iceServers: this.#iceServers });
    this.#pc = pc;
    this.#trickle = false;
    this.#pendingCandidates = [];
    this.#failedSince = 0;
    this.#wasConnected = false;
    pc.addEventListener("icecandidate", (event) => {
      // Candidates found before the SDP went out are inside it; only later ones are trickled.
      if (pc !== this.#pc || !this.#trickle) return;
      const found = event.candidate?.candidate ? event.candidate : null;
      this.#signalling.send({
        type: "candidate",
        room: this.#room,
        candidate: found ? found.candidate : null,
        sdp_mid: found?.sdpMid ?? null,
        sdp_mline_index: found?.sdpMLineIndex ?? null,
      });
    });
    pc.addEventListener("track", (event) => {
      if (pc !== this.#pc) return;
      this.remoteStream = event.streams[0] ?? new MediaStream([event.track]);
      this.#emit("remote-stream", { stream: this.remoteStream });
    });
    pc.addEventListener("connectionstatechange", () => this.#onConnectionState(pc));
    pc.addEventListener("datachannel", (event) => {
      if (pc !== this.#pc) return;
      if (event.channel.label === DATA_CHANNEL_LABEL) this.#useChannel(event.channel);
      else if (event.channel.label === MIDI_DATA_CHANNEL_LABEL) this.#useMidiChannel(event.channel);
    });
    for (const track of this.#microphone.getAudioTracks()) pc.addTrack(track, this.#microphone);
    return pc;
  }

  async #offer() {
    this.#lastRebuild = Date.now();
    const pc = this.#newPeer();
    this.#weOffered = true;
    this.#useChannel(pc.createDataChannel(DATA_CHANNEL_LABEL));
    // Right after the first, as the box expects (ISSUE6: the offerer creates both, in order).
    this.#useMidiChannel(pc.createDataChannel(MIDI_DATA_CHANNEL_LABEL, { ordered: true }));
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      if (pc !== this.#pc) return;
      this.#signalling.send({ type: "offer", room: this.#room, sdp: tuneOpusForMusic(pc.localDescription.sdp) });
      this.#trickle = true;
    } catch (error) {
      if (pc === this.#pc) console.error("could not make an offer", error);
    }
    this.#refresh();
  }

  async #answer(sdp) {
    if (this.#ended) return;
    this.#lastRebuild = Date.now();
    this.#peerPresent = true;
    this.#peerLeft = false;
    const pc = this.#newPeer();
    this.#weOffered = false;
    this.#refresh();
    try {
      await pc.setRemoteDescription({ type: "offer", sdp: tuneOpusForMusic(sdp) });
      await this.#addPendingCandidates(pc);
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      if (pc !== this.#pc) return;
      this.#signalling.send({ type: "answer", room: this.#room, sdp: tuneOpusForMusic(pc.localDescription.sdp) });
      this.#trickle = true;
    } catch (error) {
      if (pc === this.#pc) console.error("could not answer the care home's offer", error);
    }
  }

  async #onAnswer(sdp) {
    const pc = this.#pc;
    if (!pc || pc.signalingState !== "have-local-offer") return;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp: tuneOpusForMusic(sdp) });
      await this.#addPendingCandidates(pc);
    } catch (error) {
      console.error("the care home's answer did not fit", error);
    }
  }

  async #onCandidate(message) {
    const candidate = message.candidate
      ? { candidate: message.candidate, sdpMid: message.sdp_mid, sdpMLineIndex: message.sdp_mline_index }
      : null;
    const pc = this.#pc;
    if (!pc || !pc.remoteDescription) {
      this.#pendingCandidates.push(candidate);
      return;
    }
    await addCandidate(pc, candidate);
  }

  async #addPendingCandidates(pc) {
    for (const candidate of this.#pendingCandidates.splice(0)) await addCandidate(pc, candidate);
  }

  #useChannel(channel) {
    this.#channel = channel;
    channel.addEventListener("open", () => {
      if (channel !== this.#channel) return;
      this.#lastHeard = Date.now();
      this.#emit("channel", { open: true });
      this.#refresh();
    });
    channel.addEventListener("close", () => {
      if (channel !== this.#channel) return;
      // We did not close it (that clears this.#channel first), so the care home's side went
      // away: aiortc closes its data channel at once when its connection ends, long before
      // ICE notices, which makes this the quickest sign of a lost link.
      if (!this.#failedSince) this.#failedSince = Date.now();
      this.#reportDown();
      this.#emit("channel", { open: false });
      this.#refresh();
    });
    channel.addEventListener("message", (event) => {
      if (channel !== this.#channel || typeof event.data !== "string") return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message?.type === "heartbeat") {
        this.#heartbeatHeard = true;
        this.#lastHeard = Date.now();
      } else if (message?.type === "reaction" && isReactionKind(message.kind)) {
        this.#lastHeard = Date.now();
        this.#emit("reaction", { kind: message.kind });
      }
    });
  }

  #useMidiChannel(channel) {
    const previous = this.#midiChannel;
    this.#midiChannel = channel;
    // A new connection's channel replaces the old one: whatever the old one left sounding stops.
    if (previous) this.#emit("midi-channel", { open: false });
    channel.addEventListener("open", () => {
      if (channel === this.#midiChannel) this.#emit("midi-channel", { open: true });
    });
    channel.addEventListener("close", () => {
      if (channel === this.#midiChannel) this.#emit("midi-channel", { open: false });
    });
    channel.addEventListener("message", (event) => {
      if (channel !== this.#midiChannel) return;
      // Binary frames are not MidiEvents; midi.js counts them as refused like any bad batch.
      this.#emit("midi", { data: typeof event.data === "string" ? event.data : null });
    });
  }

  #onConnectionState(pc) {
    if (pc !== this.#pc) return;
    const state = pc.connectionState;
    if (state === "connected") {
      this.#failedSince = 0;
      this.#wasConnected = true;
      this.#everLive = true;
      this.#reportUp(pc);
    } else if (this.#wasConnected || state === "failed") {
      this.#reportDown();
      // "disconnected" may heal by itself; anything else (failed, or back to "new" after the
      // other side closed its DTLS) needs a new connection.
      if (state !== "disconnected" && !this.#failedSince) this.#failedSince = Date.now();
    }
    this.#refresh();
  }

  async #reportUp(pc) {
    const route = routeFrom(await pc.getStats());
    if (pc !== this.#pc || pc.connectionState !== "connected" || this.#linkUp) return;
    this.#route = route;
    this.#linkUp = this.#signalling.send({ type: "link", room: this.#room, state: "up", route });
  }

  #reportDown() {
    if (!this.#linkUp) return;
    this.#linkUp = false;
    this.#signalling.send({ type: "link", room: this.#room, state: "down", route: this.#route });
  }

  #closePeer() {
    this.#reportDown();
    const hadPeer = this.#pc !== null;
    const hadMidi = this.#midiChannel !== null;
    this.#channel?.close();
    this.#midiChannel?.close();
    this.#pc?.close();
    this.#pc = null;
    this.#channel = null;
    this.#midiChannel = null;
    this.#heartbeatHeard = false;
    this.#trickle = false;
    if (hadPeer) {
      this.remoteStream = null;
      this.#emit("remote-stream", { stream: null });
      this.#emit("channel", { open: false });
    }
    // Our own close fires no "close" we listen to (the channel was forgotten first): say it here,
    // so the notes it left sounding are released.
    if (hadMidi) this.#emit("midi-channel", { open: false });
  }

  // --- liveness -----------------------------------------------------------------------------

  #tick() {
    if (this.channelOpen) {
      this.#channel.send(JSON.stringify({ type: "heartbeat", seq: this.#heartbeatSeq++ }));
    }
    this.#recoverIfDead();
    this.#refresh();
  }

  /** A dead link is rebuilt with a new offer: at once by the side that offered last, and by
   * us as the answerer only when the care home has not done it after a while. */
  #recoverIfDead() {
    const pc = this.#pc;
    if (!pc || !this.#peerPresent || this.#ended || !this.#signalling.connected) return;
    const now = Date.now();
    const silent = this.#heartbeatHeard && now - this.#lastHeard > DEAD_MS;
    if (silent && !this.#failedSince) this.#failedSince = now;
    if (!this.#failedSince || now - this.#lastRebuild < REBUILD_GAP_MS) return;
    if (this.#weOffered || now - this.#failedSince > ANSWERER_PATIENCE_MS) this.#offer();
  }

  #refresh() {
    const state = this.#currentState();
    if (state === this.state) return;
    this.state = state;
    this.#emit("state", { state });
  }

  #currentState() {
    if (this.#ended) return "ended";
    if (!this.#joined) return "joining";
    if (this.#peerLeft) return "peer-left";
    const pc = this.#pc;
    if (!pc && !this.#peerPresent) return "waiting";
    if (!pc) return this.#everLive ? "reconnecting" : "connecting";
    const link = pc.connectionState;
    if (this.#failedSince) return "reconnecting";
    if (link === "connected") {
      const quiet = this.#heartbeatHeard && Date.now() - this.#lastHeard > QUIET_MS;
      return quiet ? "reconnecting" : "live";
    }
    const lost = link === "disconnected" || link === "failed" || this.#everLive;
    return lost || !this.#signalling.connected ? "reconnecting" : "connecting";
  }

  #finish(message = null) {
    if (this.#ended) return;
    this.#ended = true;
    clearInterval(this.#ticker);
    this.#closePeer();
    this.#listening.abort();
    this.#refresh();
    this.#emit("ended", { message });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, GATHER_LIMIT_MS);
    pc.addEventListener("icegatheringstatechange", check);
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
  });
}

async function addCandidate(pc, candidate) {
  try {
    await (candidate ? pc.addIceCandidate(candidate) : pc.addIceCandidate());
  } catch (error) {
    // A candidate from a connection we already replaced: harmless.
    console.warn("ignored an ICE candidate", error);
  }
}

/** "relay" when either end of the chosen candidate pair is a TURN relay, as the audit log asks. */
function routeFrom(report) {
  let pair = null;
  report.forEach((entry) => {
    if (entry.type === "transport" && entry.selectedCandidatePairId) {
      pair = report.get(entry.selectedCandidatePairId) ?? pair;
    }
  });
  if (!pair) {
    report.forEach((entry) => {
      if (entry.type === "candidate-pair" && entry.nominated && entry.state === "succeeded") pair = entry;
    });
  }
  if (!pair) return "unknown";
  const local = report.get(pair.localCandidateId);
  const remote = report.get(pair.remoteCandidateId);
  if (!local || !remote) return "unknown";
  return local.candidateType === "relay" || remote.candidateType === "relay" ? "relay" : "direct";
}
