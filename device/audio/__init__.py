"""The box's audio: the sound card, the microphone and speaker as aiortc tracks, cues and volume.

- ``engine.AudioEngine``: what the agent uses (start, tracks, cues, volume, faults and recovery).
- ``soundcard``: the ``SoundCard`` Protocol and the real card on sounddevice; ``fake_card``: the
  one tests drive by hand. ``cards``: which card a name in the settings means.
- ``microphone`` (the outgoing track; 10 ms Opus packets in the music profile), ``opus``
  (libopus for the music profile), ``speaker`` with ``jitter`` (music: RTP packets into an
  adaptive jitter buffer the card's clock drains) or ``playout`` (stock: aiortc's decoded
  frames), ``echo`` (PipeWire's echo canceller when the speakerphone has none), ``mixer``
  (volume, cues over the call), ``cues`` (the sounds), ``meter`` (levels in dBFS),
  ``selftest`` (``twm-device test-audio``), ``format`` (48 kHz mono).
"""
