"""The box's network side: the signalling connection to the session server and the live link.

- ``signalling.SignallingClient`` keeps one WebSocket to the server (token hello, reconnect with
  backoff), turns what the server says into lifecycle events, and relays offers and answers.
- ``links.LinkManager`` carries out the lifecycle's link actions (OpenLink, CloseLink,
  SendReaction) with at most one ``link.Link``: an aiortc peer connection with the ``twm`` data
  channel, heartbeats and reactions.
- ``ice`` holds what the box needs from ICE that aiortc does not offer: the explicit
  RTCConfiguration, which local addresses become host candidates, and the route a link took.
- ``sdp`` writes the music settings (10 ms ptime, Opus for music) into the SDP the box sends;
  ``rtp_tap`` takes the music profile's RTP packets from aiortc's receiver, before its own
  jitter buffer (aiortc internals, pinned by tests/test_net_rtp_tap.py).
"""
