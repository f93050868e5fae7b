//! Presence events in the dashboard: the compact `member_online` updates a member's row in
//! place, and `presence_reset` is logged without a reload (the agent's refresh says what
//! changed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use claudemesh_protocol::frames::Event as Wire;
use claudemesh_protocol::local::LocalEvent;
use claudemesh_tui::effect::Effect;
use claudemesh_tui::event::{AgentEvent, Event};
use claudemesh_tui::fixture::{member_id, standard};
use claudemesh_tui::state::State;
use claudemesh_tui::update::update;

fn event(s: &mut State, e: LocalEvent) -> Vec<Effect> {
    let seq = s.seq + 1;
    update(s, Event::Agent(AgentEvent::Event { seq, event: Box::new(e) }))
}

#[test]
fn a_member_coming_online_updates_its_row_and_a_presence_reset_is_only_logged() {
    let mut s = standard((80, 24));
    let erin = member_id(4);
    let online = |s: &State| s.members.iter().find(|m| m.member.member_id == erin).unwrap().member.online;
    let before = online(&s);
    let fx = event(
        &mut s,
        LocalEvent::Presence {
            mesh: "team".into(),
            event: Wire::MemberOnline { member_id: erin.clone(), online: !before },
        },
    );
    assert_eq!(online(&s), !before);
    assert!(fx.is_empty(), "a compact online change needs no reload: {fx:?}");
    let fx = event(&mut s, LocalEvent::Presence { mesh: "team".into(), event: Wire::PresenceReset {} });
    // No reload: the agent's refresh says what changed; a `members` call at every reset would
    // turn the broker's presence back on in a storm, only to be reset again.
    assert!(fx.is_empty(), "{fx:?}");
}
