"""A sound card that tests drive by hand: no audio thread, no real time.

    factory = FakeCardFactory()
    engine = AudioEngine(settings, factory, on_failed=..., on_restored=...)
    await engine.start()
    factory.card.push_input(block)       # as if the microphone delivered 10 ms
    out = factory.card.pull_output()     # what the speaker would play next 10 ms
    factory.card.fail("unplugged")       # as if PortAudio gave up
    factory.unplugged = True             # the next open raises AudioError

The handler is called on the caller's thread (the test's event loop), which exercises the same
``call_soon_threadsafe`` hand-over the real card's threads use.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from device.audio.format import BLOCK_FRAMES
from device.audio.soundcard import CardHandler
from device.errors import AudioError
from device.settings import AudioSettings


class FakeCard:
    def __init__(self, input_name: str = "fake mic", output_name: str = "fake speaker") -> None:
        self._input_name = input_name
        self._output_name = output_name
        self.handler: CardHandler | None = None
        self.problem: str | None = None  # what check() reports, as a stalled card would
        self.inputs = 0
        self.outputs = 0
        self.stops = 0

    @property
    def input_name(self) -> str:
        return self._input_name

    @property
    def output_name(self) -> str:
        return self._output_name

    @property
    def running(self) -> bool:
        return self.handler is not None

    def start(self, handler: CardHandler) -> None:
        self.handler = handler
        self.inputs = self.outputs = 0

    def stop(self) -> None:
        self.handler = None
        self.stops += 1

    def check(self) -> str | None:
        return self.problem

    def flowing(self) -> bool:
        return self.running and self.inputs > 0 and self.outputs > 0

    def push_input(self, block: npt.NDArray[np.int16]) -> None:
        """Deliver one microphone block (any length; the real card's is ``BLOCK_FRAMES``)."""
        if self.handler is None:
            raise RuntimeError("the fake card is not running")
        self.inputs += 1
        self.handler.on_input(np.ascontiguousarray(block, dtype=np.int16))

    def pull_output(self, frames: int = BLOCK_FRAMES) -> npt.NDArray[np.float32]:
        """Run one speaker callback and return what it wrote."""
        if self.handler is None:
            raise RuntimeError("the fake card is not running")
        self.outputs += 1
        out = np.zeros(frames, dtype=np.float32)
        self.handler.on_output(out)
        return out

    def fail(self, message: str) -> None:
        """Report a failure as a PortAudio thread would."""
        if self.handler is not None:
            self.handler.on_error(message)


class FakeCardFactory:
    """Makes ``FakeCard`` s; ``unplugged`` makes opening fail like a missing card does."""

    def __init__(self) -> None:
        self.unplugged = False
        self.cards: list[FakeCard] = []
        self.attempts = 0

    @property
    def card(self) -> FakeCard:
        """The card made last."""
        return self.cards[-1]

    def __call__(self, settings: AudioSettings) -> FakeCard:
        self.attempts += 1
        if self.unplugged:
            raise AudioError(
                f"no microphone named {settings.input!r} — found: default; "
                "set audio.input (TWM_DEVICE_AUDIO__INPUT)"
            )
        card = FakeCard(input_name=settings.input, output_name=settings.output)
        self.cards.append(card)
        return card
