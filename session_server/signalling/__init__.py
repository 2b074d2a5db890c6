"""WebRTC signalling between exactly the two parties of an open room."""
