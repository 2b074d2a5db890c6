"""Opus settings for music, written into the SDP the box sends.

    answer = tune_for_music(pc.localDescription.sdp)

The Python twin of session_server/static/opus.js (the school page does the same in the
browser). An Opus ``a=fmtp`` line tells the *other* side's encoder how we want to receive:
browsers default to speech, about 32 kbit/s with DTX, which stops sending in quiet passages and
clips the soft end of a held note. We ask for a music bitrate, in-band FEC, no DTX and mono
(the box has one microphone and one speaker). ``a=ptime:10`` / ``a=maxptime:10`` ask for 10 ms
packets: the frame length is the first delay on the path, and 20 ms (everyone's default) is
half of the whole budget.

Only audio sections that carry Opus are touched, and in them only the Opus fmtp line and the
ptime/maxptime lines; everything else, line endings included, comes back as it was. Tuning
twice changes nothing.
"""

from __future__ import annotations

import re
from typing import Final

MUSIC_FMTP: Final = {
    "maxaveragebitrate": "128000",
    "useinbandfec": "1",
    "usedtx": "0",
    "stereo": "0",
}
PTIME_MS: Final = 10

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/48000", re.IGNORECASE)
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$")
_PACKET_TIME = re.compile(r"^a=(?:max)?ptime:", re.IGNORECASE)


def tune_for_music(sdp: str) -> str:
    """The same SDP with Opus set up for music and 10 ms packets."""
    newline = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(newline)
    out: list[str] = []
    section: list[str] = []
    for line in lines:
        if line.startswith("m="):
            out += _tune_section(section)
            section = []
        section.append(line)
    out += _tune_section(section)
    return newline.join(out)


def _tune_section(lines: list[str]) -> list[str]:
    """One media section (or the session part before the first ``m=``), tuned if it is audio
    with Opus in it."""
    if not lines or not lines[0].startswith("m=audio"):
        return lines
    opus_types = [m.group(1) for line in lines if (m := _RTPMAP.match(line))]
    if not opus_types:
        return lines
    # A section ends with the empty string left after the SDP's final line break: keep it last.
    trailer = [] if lines[-1] else [lines.pop()]
    out: list[str] = []
    tuned: set[str] = set()
    for line in lines:
        if _PACKET_TIME.match(line):
            continue  # replaced below, once
        fmtp = _FMTP.match(line)
        if fmtp and fmtp.group(1) in opus_types:
            out.append(f"a=fmtp:{fmtp.group(1)} {_with_music(fmtp.group(2))}")
            tuned.add(fmtp.group(1))
            continue
        out.append(line)
    # An offer may have no fmtp line for Opus at all: add one straight after its rtpmap line.
    for payload_type in opus_types:
        if payload_type in tuned:
            continue
        at = next(i for i, line in enumerate(out) if line.startswith(f"a=rtpmap:{payload_type} "))
        out.insert(at + 1, f"a=fmtp:{payload_type} {_with_music('')}")
    # Packet times belong to the section, not a codec: after the last Opus fmtp line.
    last = max(
        i
        for i, line in enumerate(out)
        if (fmtp := _FMTP.match(line)) is not None and fmtp.group(1) in opus_types
    )
    out[last + 1 : last + 1] = [f"a=ptime:{PTIME_MS}", f"a=maxptime:{PTIME_MS}"]
    return out + trailer


def _with_music(parameters: str) -> str:
    pairs: dict[str, str] = {}
    for part in parameters.split(";"):
        key, _, value = part.partition("=")
        key = key.strip().lower()
        if key:
            pairs[key] = value.strip()
    pairs.update(MUSIC_FMTP)
    return ";".join(f"{key}={value}" for key, value in pairs.items())
