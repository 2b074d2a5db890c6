"""The box's life as one pure state machine: events in, actions out, no I/O.

    machine = Machine.initial(now)
    machine, actions = machine.step(StartPressed())

Everything else in ``device`` either turns the world into events (buttons, the server, the link,
the sound card, the clock) or carries out actions (lights, sounds, joining, the peer connection).
"""

from device.lifecycle.actions import Action
from device.lifecycle.events import Event
from device.lifecycle.machine import Machine
from device.lifecycle.states import State

__all__ = ["Action", "Event", "Machine", "State"]
