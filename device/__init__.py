"""The care-home box: captures the room, plays the other room, joins the session over WebRTC.

Screen-free: residents and staff use big buttons and see its state on LEDs. Commands arrive with
the device issue; for now ``twm-device`` only tells its version.
"""
