"""The SDP the box sends asks for music: Opus at 128 kbit/s with FEC, no DTX, mono, 10 ms
packets; nothing else in the SDP changes; aiortc and Chromium accept it and Chromium then sends
10 ms packets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from playwright.async_api import BrowserContext, Route

from device.net.ice import host_addresses
from device.net.sdp import tune_for_music
from tests.net_support import negotiate_on_loopback
from tests.standin_device import ToneTrack

MUSIC = "maxaveragebitrate=128000;useinbandfec=1;usedtx=0;stereo=0"

# What Chromium offers for audio, video and a data channel (shortened, real attribute order).
CHROMIUM_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1 2",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Gx2P",
        "a=ice-pwd:qW6b0p4Lx2vYfT3hQ1uK9sZc",
        "a=ice-options:trickle",
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=sendrecv",
        "a=msid:- 8f3c2e4a-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:13 CN/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
        "a=ptime:20",
        "a=maxptime:120",
        "a=ssrc:1001 cname:abcdefghijklmnop",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 0.0.0.0",
        "a=mid:1",
        "a=rtpmap:96 VP8/90000",
        "a=fmtp:96 x-google-start-bitrate=800",
        "a=ptime:33",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=mid:2",
        "a=sctp-port:5000",
        "",
    ]
)


def lines_of(sdp: str) -> list[str]:
    return sdp.split("\r\n")


def audio_section(sdp: str) -> list[str]:
    lines = lines_of(sdp)
    start = next(i for i, line in enumerate(lines) if line.startswith("m=audio"))
    end = next(i for i, line in enumerate(lines) if line.startswith("m=video"))
    return lines[start:end]


def test_the_opus_fmtp_asks_for_music_and_keeps_what_was_there() -> None:
    tuned = tune_for_music(CHROMIUM_OFFER)
    assert [line for line in lines_of(tuned) if line.startswith("a=fmtp:111 ")] == [
        "a=fmtp:111 minptime=10;useinbandfec=1;maxaveragebitrate=128000;usedtx=0;stereo=0"
    ]


def test_the_audio_section_asks_for_10ms_packets_instead_of_its_own_packet_times() -> None:
    section = audio_section(tune_for_music(CHROMIUM_OFFER))
    times = [line for line in section if "ptime:" in line]
    assert times == ["a=ptime:10", "a=maxptime:10"]
    # Straight after the Opus fmtp line, where a reader of the codec lines looks.
    at = section.index("a=ptime:10")
    assert section[at - 1].startswith("a=fmtp:111 ")


def test_nothing_but_the_opus_fmtp_and_the_audio_packet_times_changes() -> None:
    tuned = tune_for_music(CHROMIUM_OFFER)
    ours = {"a=ptime:10", "a=maxptime:10"}
    kept_before = [
        line
        for line in lines_of(CHROMIUM_OFFER)
        if not line.startswith("a=fmtp:111 ") and line not in ("a=ptime:20", "a=maxptime:120")
    ]
    kept_after = [
        line for line in lines_of(tuned) if not line.startswith("a=fmtp:111 ") and line not in ours
    ]
    assert kept_after == kept_before
    assert "a=fmtp:63 111/111" in kept_after  # RED carries Opus but is not Opus
    assert "a=ptime:33" in kept_after  # the video section's own line


def test_tuning_twice_changes_nothing_and_line_endings_are_kept() -> None:
    tuned = tune_for_music(CHROMIUM_OFFER)
    assert tune_for_music(tuned) == tuned
    assert tuned.count("\r\n") == len(lines_of(tuned)) - 1
    assert "\n" not in tuned.replace("\r\n", "")
    assert tuned.endswith("\r\n")
    unix = CHROMIUM_OFFER.replace("\r\n", "\n")
    assert tune_for_music(unix) == tuned.replace("\r\n", "\n")


def test_an_opus_codec_without_fmtp_gets_one_straight_after_its_rtpmap() -> None:
    offer = "\r\n".join(
        [
            "v=0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 96 0",
            "a=rtpmap:96 opus/48000/2",
            "a=rtpmap:0 PCMU/8000",
            "",
        ]
    )
    assert lines_of(tune_for_music(offer)) == [
        "v=0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 96 0",
        "a=rtpmap:96 opus/48000/2",
        f"a=fmtp:96 {MUSIC}",
        "a=ptime:10",
        "a=maxptime:10",
        "a=rtpmap:0 PCMU/8000",
        "",
    ]


def test_an_audio_section_without_opus_is_left_alone() -> None:
    offer = "\r\n".join(
        ["v=0", "m=audio 9 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=ptime:20", "a=fmtp:0 x=1", ""]
    )
    assert tune_for_music(offer) == offer


# aiortc on both ends: two boxes.


async def connect(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """Offer and answer, each tuned as the box sends it."""
    await negotiate_on_loopback(offerer, answerer, tune_for_music)


async def test_aiortc_accepts_the_tuned_sdp_both_ways_and_audio_flows() -> None:
    home = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    school = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    tracks: dict[str, asyncio.Future[MediaStreamTrack]] = {}
    for name, pc in (("home", home), ("school", school)):
        pc.addTrack(ToneTrack())
        tracks[name] = asyncio.get_running_loop().create_future()
        pc.on("track", tracks[name].set_result)
    try:
        await connect(home, school)
        # aiortc keeps the fmtp it read (and ignores a=ptime: the box's own packet time comes
        # from its microphone track, not from the SDP).
        assert f"a=fmtp:96 {MUSIC}" in lines_of(school.remoteDescription.sdp)
        assert f"a=fmtp:96 {MUSIC}" in lines_of(home.remoteDescription.sdp)
        for name in ("home", "school"):
            remote = await asyncio.wait_for(tracks[name], 20)
            frames = [await asyncio.wait_for(remote.recv(), 5) for _ in range(10)]
            assert any(frame.to_ndarray().any() for frame in frames), name
    finally:
        await asyncio.gather(home.close(), school.close())


# Chromium as the school's browser.

STATIC = Path(__file__).parent.parent / "session_server" / "static"
ORIGIN = "https://box.test"  # served by Playwright's router: nothing leaves the machine

SCHOOL_PAGE = """
<!doctype html><script type="module">
import { tuneOpusForMusic } from "./opus.js";
window.tuneOpusForMusic = tuneOpusForMusic;
window.answer = async (offer) => {
  const pc = new RTCPeerConnection({ iceServers: [] });
  const audio = new AudioContext();
  const note = audio.createOscillator();
  const out = audio.createMediaStreamDestination();
  note.connect(out);
  note.start();
  for (const track of out.stream.getTracks()) pc.addTrack(track, out.stream);
  await pc.setRemoteDescription({ type: "offer", sdp: offer });
  const answer = await pc.createAnswer();
  const sdp = tuneOpusForMusic(answer.sdp);
  await pc.setLocalDescription({ type: "answer", sdp });
  await new Promise((done) => {
    if (pc.iceGatheringState === "complete") done();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") done();
    });
  });
  window.pc = pc;
  return pc.localDescription.sdp;
};
window.ready = true;
</script>
"""


async def serve_school_page(route: Route) -> None:
    path = route.request.url.removeprefix(ORIGIN)
    if path == "/opus.js":
        await route.fulfill(body=(STATIC / "opus.js").read_text(), content_type="text/javascript")
    else:
        await route.fulfill(body=SCHOOL_PAGE, content_type="text/html")


@pytest.mark.browser
async def test_chromium_sends_10ms_packets_when_the_box_asks(
    browser: BrowserContext,
) -> None:
    page = await browser.new_page()
    await page.route(f"{ORIGIN}/**", serve_school_page)
    await page.goto(f"{ORIGIN}/school.html")
    await page.wait_for_function("window.ready === true")

    # The Python and JavaScript twins write the same fmtp lines (ours adds stereo=0; packet
    # times are only ours: the page's opus.js leaves them as the browser wrote them).
    js = await page.evaluate("(sdp) => window.tuneOpusForMusic(sdp)", CHROMIUM_OFFER)
    python = tune_for_music(CHROMIUM_OFFER)
    assert [line for line in lines_of(js) if line.startswith("a=fmtp:")] == [
        line.replace(";stereo=0", "") for line in lines_of(python) if line.startswith("a=fmtp:")
    ]

    box = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    box.addTrack(ToneTrack())
    arrived: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    box.on("track", arrived.set_result)
    try:
        with host_addresses(("127.0.0.1",)):
            await box.setLocalDescription(await box.createOffer())
            offer = tune_for_music(box.localDescription.sdp)
            answer = await page.evaluate("(offer) => window.answer(offer)", offer)
            await box.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        remote = await asyncio.wait_for(arrived, 20)
        frames = [await asyncio.wait_for(remote.recv(), 5) for _ in range(50)]
    finally:
        await box.close()
    # aiortc decodes one frame per RTP packet: Chromium honoured a=ptime:10.
    assert {frame.samples for frame in frames[5:]} == {480}
