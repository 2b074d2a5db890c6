"""MIDI instruments played across the link.

- ``wire``: mido messages to and from the data channel's ``MidiEvents`` (channel-voice only).
- ``parser``: a raw MIDI byte stream (running status, real-time bytes anywhere) into messages.
- ``sounding``: which notes sound, and the messages that silence them all (no stuck notes).
- ``playout``: the receiving side's timing: each note at its sender's time plus a steady delay.
- ``ports``: the instruments and synths the settings name, opened and kept open as they come
  and go, off the event loop.
"""
