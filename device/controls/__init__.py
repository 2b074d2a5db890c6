"""The box's buttons and lights, through gpiozero.

    factory = pin_factory(settings.pins)          # lgpio on the Pi, MockFactory on a laptop
    buttons = Buttons(settings.pins, factory, loop, on_event)
    lights = Lights(settings.pins, factory)
    lights.show(State.IDLE)

Where there is no GPIO (a laptop, the demo, the tests) ``pins.factory = "mock"`` gives gpiozero's
MockFactory, whose pins are driven from the terminal by ``Keyboard``: the buttons and lights run
the same code as on a real box, only the pins underneath are simulated.
"""

from device.controls.buttons import Buttons
from device.controls.keyboard import Keyboard
from device.controls.lights import Lights
from device.controls.pins import pin_factory

__all__ = ["Buttons", "Keyboard", "Lights", "pin_factory"]
