"""The box's life as a table: every state and every event → the next state.

Read a column to see what one state does with everything that can happen; read a row to see what
one event does in every state. Focused tests of the actions follow the table.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from device.lifecycle import actions as act
from device.lifecycle import events as ev
from device.lifecycle.machine import CHIME_EVERY, ENDED_SHOWN_FOR, LINK_RETRY, Machine
from device.lifecycle.states import Cue, State
from session_server.protocol import Occurrence, Party, PartyKind, ReactionKind

NOW = datetime(2026, 11, 24, 13, 50, tzinfo=UTC)
HOME = Party(kind=PartyKind.CARE_HOME, id=1, name="Rosewood")
SCHOOL = Party(kind=PartyKind.SCHOOL, id=1, name="Hillside")


def occurrence(start: datetime, session_id: int = 1) -> Occurrence:
    end = start + timedelta(minutes=45)
    return Occurrence(
        room=f"s{session_id}@{start:%Y%m%dT%H%MZ}",
        session_id=session_id,
        title="Singing",
        starts_at=start,
        ends_at=end,
        window_opens_at=start - timedelta(minutes=15),
        window_closes_at=end + timedelta(minutes=10),
        care_home=HOME,
        school=SCHOOL,
    )


NOW_OCC = occurrence(datetime(2026, 11, 24, 14, 0, tzinfo=UTC))  # window open at NOW
LATER_OCC = occurrence(datetime(2026, 11, 24, 18, 0, tzinfo=UTC), session_id=2)
ROOM = NOW_OCC.room

_online = Machine(now=NOW, server_up=True, party=HOME, schedule=(NOW_OCC, LATER_OCC))
_in_room = replace(_online, room=NOW_OCC, chimed_at=NOW)

MACHINES: dict[State, Machine] = {
    State.OFFLINE: Machine(now=NOW, schedule=(NOW_OCC,)),
    State.IDLE: replace(_online, schedule=(LATER_OCC,)),
    State.SESSION_SOON: replace(_online, chimed_at=NOW),
    State.CONNECTING: _in_room,
    State.WAITING: replace(_in_room, joined=True),
    State.LIVE: replace(_in_room, joined=True, peer_present=True, link_up=True, was_live=True),
    State.RECONNECTING: replace(
        _in_room,
        joined=True,
        peer_present=True,
        was_live=True,
        we_offer=True,
        last_link_attempt=NOW,
    ),
    State.ENDED: replace(_online, ended_until=NOW + ENDED_SHOWN_FOR, chimed_at=NOW),
    State.FAULT: replace(_online, audio_ok=False, fault="no sound card"),
}

EVENTS: dict[str, ev.Event] = {
    "tick": ev.Tick(NOW + timedelta(seconds=1)),
    "server up": ev.ServerUp(HOME),
    "server down": ev.ServerDown(),
    "schedule emptied": ev.ScheduleChanged(()),
    "start": ev.StartPressed(),
    "start held": ev.StartHeld(),
    "react": ev.ReactPressed(ReactionKind.CLAP),
    "volume up": ev.VolumePressed(+1),
    "mute": ev.MutePressed(),
    "join accepted, peer there": ev.JoinAccepted(ROOM, peer_present=True),
    "join refused": ev.JoinRefused(ROOM, "this session closed at 14:55"),
    "peer joined": ev.PeerJoined(ROOM),
    "peer left": ev.PeerLeft(ROOM),
    "room ended": ev.RoomEnded(ROOM, "this session's time is over"),
    "link up": ev.LinkUp(ROOM),
    "link down": ev.LinkDown(ROOM),
    "reaction arrived": ev.ReactionArrived(ReactionKind.HEART),
    "audio failed": ev.AudioFailed("sound card gone"),
    "audio restored": ev.AudioRestored(),
}

OFF, IDL, SOON, CONN, WAIT, LIVE, RECO, END, FLT = (
    State.OFFLINE,
    State.IDLE,
    State.SESSION_SOON,
    State.CONNECTING,
    State.WAITING,
    State.LIVE,
    State.RECONNECTING,
    State.ENDED,
    State.FAULT,
)
COLUMNS = (OFF, IDL, SOON, CONN, WAIT, LIVE, RECO, END, FLT)

# fmt: off
TABLE: dict[str, tuple[State, ...]] = {
    #                             offline idle  soon  conn  wait  live  reco  ended fault
    "tick":                      (OFF,    IDL,  SOON, CONN, WAIT, LIVE, RECO, END,  FLT),
    "server up":                 (SOON,   IDL,  SOON, CONN, CONN, LIVE, RECO, END,  FLT),
    "server down":               (OFF,    OFF,  OFF,  CONN, CONN, LIVE, RECO, END,  FLT),
    "schedule emptied":          (OFF,    IDL,  IDL,  CONN, WAIT, LIVE, RECO, END,  FLT),
    "start":                     (OFF,    IDL,  CONN, CONN, WAIT, LIVE, RECO, CONN, FLT),
    "start held":                (OFF,    IDL,  SOON, END,  END,  END,  END,  END,  FLT),
    "react":                     (OFF,    IDL,  SOON, CONN, WAIT, LIVE, RECO, END,  FLT),
    "volume up":                 (OFF,    IDL,  SOON, CONN, WAIT, LIVE, RECO, END,  FLT),
    "mute":                      (OFF,    IDL,  SOON, CONN, WAIT, LIVE, RECO, END,  FLT),
    "join accepted, peer there": (OFF,    IDL,  SOON, CONN, CONN, LIVE, RECO, END,  FLT),
    "join refused":              (OFF,    IDL,  SOON, SOON, SOON, SOON, SOON, END,  FLT),
    "peer joined":               (OFF,    IDL,  SOON, CONN, CONN, LIVE, CONN, END,  FLT),
    "peer left":                 (OFF,    IDL,  SOON, CONN, WAIT, WAIT, WAIT, END,  FLT),
    "room ended":                (OFF,    IDL,  SOON, END,  END,  END,  END,  END,  FLT),
    "link up":                   (OFF,    IDL,  SOON, LIVE, LIVE, LIVE, LIVE, END,  FLT),
    "link down":                 (OFF,    IDL,  SOON, CONN, WAIT, RECO, RECO, END,  FLT),
    "reaction arrived":          (OFF,    IDL,  SOON, CONN, WAIT, LIVE, RECO, END,  FLT),
    "audio failed":              (FLT,    FLT,  FLT,  FLT,  FLT,  FLT,  FLT,  FLT,  FLT),
    "audio restored":            (OFF,    IDL,  SOON, CONN, WAIT, LIVE, RECO, END,  SOON),
}
# fmt: on


def test_the_fixtures_are_in_the_states_they_claim() -> None:
    assert {state: m.state for state, m in MACHINES.items()} == {s: s for s in MACHINES}


def test_the_table_covers_every_state_and_event() -> None:
    assert set(TABLE) == set(EVENTS)
    assert set(COLUMNS) == set(State)


CASES = [
    pytest.param(state, name, TABLE[name][i], id=f"{state.value}--{name}")
    for name in TABLE
    for i, state in enumerate(COLUMNS)
]


@pytest.mark.parametrize(("state", "event_name", "expected"), CASES)
def test_transition(state: State, event_name: str, expected: State) -> None:
    after, actions = MACHINES[state].step(EVENTS[event_name])
    assert after.state is expected
    shown = [a.state for a in actions if isinstance(a, act.ShowState)]
    if expected is not state:
        assert shown == [expected], "a change of state is shown on the light exactly once"
    else:
        assert shown == []


PRESSES = ["start", "start held", "react", "volume up", "mute"]


@pytest.mark.parametrize(
    ("state", "press"), [(state, press) for state in State for press in PRESSES]
)
def test_every_press_in_every_state_gets_a_sound(state: State, press: str) -> None:
    _, actions = MACHINES[state].step(EVENTS[press])
    assert any(isinstance(a, act.PlayCue) for a in actions), "a press is never met with silence"


@pytest.mark.parametrize(("state", "event_name", "expected"), CASES)
def test_on_air_is_lit_exactly_while_the_microphone_is_sent(
    state: State, event_name: str, expected: State
) -> None:
    before = MACHINES[state]
    after, actions = before.step(EVENTS[event_name])
    assert after.on_air == (after.state is State.LIVE and not after.muted)
    switches = [a.on for a in actions if isinstance(a, act.SetOnAir)]
    assert switches == ([after.on_air] if after.on_air != before.on_air else [])


# --- focused: what the actions are -------------------------------------------------------------


def cues(actions: list[act.Action]) -> list[Cue]:
    return [a.cue for a in actions if isinstance(a, act.PlayCue)]


def test_start_in_an_open_window_joins_that_room() -> None:
    after, actions = MACHINES[State.SESSION_SOON].step(ev.StartPressed())
    assert act.Join(ROOM) in actions
    assert cues(actions) == [Cue.JOINED]
    assert after.room == NOW_OCC


@pytest.mark.parametrize("state", [OFF, IDL, CONN, WAIT, LIVE, RECO])
def test_start_that_means_nothing_says_not_now(state: State) -> None:
    _, actions = MACHINES[state].step(ev.StartPressed())
    assert cues(actions) == [Cue.NOT_NOW]
    assert not any(isinstance(a, act.Join) for a in actions)


def test_start_in_a_fault_plays_the_problem_sound() -> None:
    assert cues(MACHINES[FLT].step(ev.StartPressed())[1]) == [Cue.PROBLEM]


@pytest.mark.parametrize("state", [CONN, WAIT, LIVE, RECO])
def test_holding_start_leaves_closes_the_link_and_says_ended(state: State) -> None:
    after, actions = MACHINES[state].step(ev.StartHeld())
    assert act.Leave(ROOM) in actions and act.CloseLink(ROOM) in actions
    assert Cue.ENDED in cues(actions)
    assert after.room is None and not after.muted


def test_when_the_other_side_is_there_we_offer() -> None:
    after, actions = MACHINES[CONN].step(ev.JoinAccepted(ROOM, peer_present=True))
    assert act.OpenLink(ROOM, offer=True) in actions
    assert after.we_offer


def test_when_the_other_side_arrives_we_wait_for_its_offer() -> None:
    after, actions = MACHINES[WAIT].step(ev.PeerJoined(ROOM))
    assert act.OpenLink(ROOM, offer=False) in actions
    assert not after.we_offer


def test_going_live_plays_connected_and_lights_on_air() -> None:
    before = replace(MACHINES[WAIT], peer_present=True)
    _, actions = before.step(ev.LinkUp(ROOM))
    assert actions[0] == act.ShowState(LIVE)
    assert cues(actions) == [Cue.CONNECTED]
    assert actions[-1] == act.SetOnAir(True)


def test_mute_turns_on_air_off_first_and_unmute_back_on() -> None:
    muted, actions = MACHINES[LIVE].step(ev.MutePressed())
    assert actions[0] == act.SetOnAir(False)
    assert cues(actions) == [Cue.MUTED]
    unmuted, actions = muted.step(ev.MutePressed())
    assert cues(actions) == [Cue.UNMUTED] and actions[-1] == act.SetOnAir(True)
    assert unmuted.on_air


def test_a_reaction_is_sent_only_while_live() -> None:
    _, actions = MACHINES[LIVE].step(ev.ReactPressed(ReactionKind.HEART))
    assert act.SendReaction(ReactionKind.HEART) in actions and cues(actions) == [Cue.SENT]
    _, actions = MACHINES[WAIT].step(ev.ReactPressed(ReactionKind.HEART))
    assert cues(actions) == [Cue.NOT_NOW] and not any(
        isinstance(a, act.SendReaction) for a in actions
    )


def test_a_reaction_from_the_other_side_chimes_and_flashes() -> None:
    _, actions = MACHINES[LIVE].step(ev.ReactionArrived(ReactionKind.WAVE))
    assert cues(actions) == [Cue.REACTION]
    assert act.FlashReaction(ReactionKind.WAVE) in actions


def test_volume_steps_and_stops_at_the_ends() -> None:
    machine = MACHINES[IDL]
    levels = []
    for _ in range(12):
        machine, actions = machine.step(ev.VolumePressed(+1))
        levels += [a.level for a in actions if isinstance(a, act.SetVolume)]
    assert levels == [7, 8, 9, 10]
    assert cues(actions) == [Cue.NOT_NOW]


def test_the_window_opening_chimes_and_repeats_gently() -> None:
    machine = replace(
        MACHINES[IDL], schedule=(NOW_OCC,), now=NOW_OCC.window_opens_at - timedelta(seconds=1)
    )
    assert machine.state is IDL
    machine, actions = machine.step(ev.Tick(NOW_OCC.window_opens_at))
    assert machine.state is SOON and cues(actions) == [Cue.SESSION_SOON]
    machine, actions = machine.step(ev.Tick(NOW_OCC.window_opens_at + timedelta(minutes=1)))
    assert cues(actions) == []
    machine, actions = machine.step(ev.Tick(NOW_OCC.window_opens_at + CHIME_EVERY))
    assert cues(actions) == [Cue.SESSION_SOON]


def test_the_window_closing_ends_the_session_even_without_the_server() -> None:
    live = replace(MACHINES[LIVE], server_up=False)
    after, actions = live.step(ev.Tick(NOW_OCC.window_closes_at))
    assert after.state is END and act.Leave(ROOM) in actions
    later, actions = after.step(ev.Tick(NOW_OCC.window_closes_at + ENDED_SHOWN_FOR))
    assert later.state is OFF


def test_a_lost_link_is_rebuilt_at_once_by_the_side_that_offered() -> None:
    live = replace(MACHINES[LIVE], we_offer=True)
    after, actions = live.step(ev.LinkDown(ROOM))
    assert after.state is RECO and act.OpenLink(ROOM, offer=True) in actions


def test_the_answering_side_takes_over_when_no_offer_comes() -> None:
    live = replace(MACHINES[LIVE], we_offer=False)
    waiting, actions = live.step(ev.LinkDown(ROOM))
    assert not any(isinstance(a, act.OpenLink) for a in actions)
    soon, actions = waiting.step(ev.Tick(NOW + LINK_RETRY - timedelta(seconds=1)))
    assert not any(isinstance(a, act.OpenLink) for a in actions)
    _, actions = soon.step(ev.Tick(NOW + LINK_RETRY))
    assert act.OpenLink(ROOM, offer=True) in actions


def test_a_repeated_link_down_does_not_storm_offers() -> None:
    live = replace(MACHINES[LIVE], we_offer=True)
    down, _ = live.step(ev.LinkDown(ROOM))
    _, actions = down.step(ev.LinkDown(ROOM))
    assert actions == []


def test_a_server_blip_keeps_a_live_link_and_rejoins() -> None:
    live = MACHINES[LIVE]
    away, actions = live.step(ev.ServerDown())
    assert away.state is LIVE and actions == []
    back, actions = away.step(ev.ServerUp(HOME))
    assert actions == [act.Join(ROOM)] and back.state is LIVE
    again, actions = back.step(ev.JoinAccepted(ROOM, peer_present=True))
    assert again.state is LIVE and actions == []  # the link is up: no new offer


def test_sound_card_loss_mid_session_keeps_the_room_and_recovers_to_live() -> None:
    fault, actions = MACHINES[LIVE].step(ev.AudioFailed("USB speakerphone unplugged"))
    assert fault.state is FLT and act.SetOnAir(False) in actions
    assert cues(actions) == [Cue.PROBLEM] and fault.room == NOW_OCC
    back, actions = fault.step(ev.AudioRestored())
    assert back.state is LIVE and actions[-1] == act.SetOnAir(True)


def test_answers_for_a_room_we_left_are_tidied_up() -> None:
    _, actions = MACHINES[SOON].step(ev.JoinAccepted(ROOM, peer_present=False))
    assert actions == [act.Leave(ROOM)]
    _, actions = MACHINES[SOON].step(ev.LinkUp(ROOM))
    assert actions == [act.CloseLink(ROOM)]


def test_the_initial_actions_show_offline_with_the_microphone_off() -> None:
    machine, actions = Machine.initial(NOW)
    assert machine.state is OFF
    assert actions == [act.ShowState(OFF), act.SetOnAir(False), act.SetVolume(machine.volume)]
