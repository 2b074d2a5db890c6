"""The gpiozero pin factory named by ``pins.factory``: real GPIO on the Pi, mock pins elsewhere.

    factory = pin_factory(settings.pins)
    try:
        ...  # Buttons(settings.pins, factory, ...), Lights(settings.pins, factory)
    finally:
        factory.close()  # after the devices

The factory is built here and handed to each device (``pin_factory=``) rather than set as
gpiozero's global ``Device.pin_factory``: the fake is chosen by settings, never because gpiozero
fell back to it, and nothing else in the process can swap it underneath the box.
"""

from __future__ import annotations

import glob

from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory, MockPWMPin

from device.errors import ControlsError
from device.settings import PinSettings

NO_GPIO_HINT = "set pins.factory = 'mock' for a laptop or the demo"


def pin_factory(settings: PinSettings) -> Factory:
    """Open the pin library that ``settings.factory`` names, or raise ``ControlsError``."""
    if settings.factory == "mock":
        # PWM pins so that the status light can dim, as it does on the Pi.
        return MockFactory(pin_class=MockPWMPin)
    try:
        return _open_real(settings.factory)
    # Each library fails in its own way off a Pi (ImportError, gpiozero's PinUnknownPi, lgpio.error,
    # OSError): whichever it is, the box cannot start its controls, and says so.
    except Exception as exc:
        raise ControlsError(_explain(settings.factory, exc)) from exc


def _open_real(name: str) -> Factory:
    # Imported on demand: each module imports its C library at the top.
    if name == "lgpio":
        from gpiozero.pins.lgpio import LGPIOFactory

        return LGPIOFactory()
    if name == "rpigpio":
        from gpiozero.pins.rpigpio import RPiGPIOFactory

        return RPiGPIOFactory()
    if name == "native":
        from gpiozero.pins.native import NativeFactory

        return NativeFactory()
    # PinSettings only admits the names above.
    raise ControlsError(f"unknown pins.factory {name!r}: use lgpio, rpigpio, native or mock")


# The Debian package that brings each library's Python module (Raspberry Pi OS).
_PACKAGES = {"lgpio": "python3-lgpio", "rpigpio": "python3-rpi.gpio"}


def _explain(name: str, exc: Exception) -> str:
    reason = f"{type(exc).__name__}: {exc}"
    if not glob.glob("/dev/gpiochip*"):
        return f"no GPIO on this machine: {NO_GPIO_HINT} (pins.factory = {name!r} failed: {reason})"
    if isinstance(exc, ImportError):
        package = _PACKAGES.get(name, "its library")
        return (
            f"pins.factory = {name!r} needs {package}, which is not installed ({reason}): "
            f"install it, or {NO_GPIO_HINT}"
        )
    return (
        f"cannot open the GPIO with pins.factory = {name!r} ({reason}): "
        "is the service user in the 'gpio' group?"
    )
