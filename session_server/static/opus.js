// Opus settings for music, written into the SDP both ways.
//
// An Opus "fmtp" line tells the *other* side's encoder how we want to receive. Browsers default
// to speech: about 32 kbit/s, and DTX, which stops sending in quiet passages and so clips the
// soft end of a held note. We ask for a music bitrate, in-band FEC (a lost packet is rebuilt
// from the next one instead of heard as a click), and no DTX.

const MUSIC = { maxaveragebitrate: "128000", useinbandfec: "1", usedtx: "0" };

export function tuneOpusForMusic(sdp) {
  const lines = sdp.split("\r\n");
  const opusTypes = new Set();
  for (const line of lines) {
    const match = /^a=rtpmap:(\d+) opus\/48000/i.exec(line);
    if (match) opusTypes.add(match[1]);
  }
  const out = [];
  const tuned = new Set();
  for (const line of lines) {
    const fmtp = /^a=fmtp:(\d+) (.*)$/.exec(line);
    if (fmtp && opusTypes.has(fmtp[1])) {
      out.push(`a=fmtp:${fmtp[1]} ${withMusic(fmtp[2])}`);
      tuned.add(fmtp[1]);
      continue;
    }
    out.push(line);
  }
  // An offer may have no fmtp line for Opus at all: add one straight after its rtpmap line.
  for (const type of opusTypes) {
    if (tuned.has(type)) continue;
    const at = out.findIndex((line) => line.startsWith(`a=rtpmap:${type} `));
    out.splice(at + 1, 0, `a=fmtp:${type} ${withMusic("")}`);
  }
  return out.join("\r\n");
}

function withMusic(parameters) {
  const pairs = new Map();
  for (const part of parameters.split(";")) {
    const [key, value] = part.split("=").map((s) => s.trim());
    if (key) pairs.set(key.toLowerCase(), value ?? "");
  }
  for (const [key, value] of Object.entries(MUSIC)) pairs.set(key, value);
  return [...pairs].map(([key, value]) => `${key}=${value}`).join(";");
}
