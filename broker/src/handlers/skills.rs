//! Skill frames (DESIGN §9): skills shared with a whole mesh, stored under `mesh␟name`. Anyone
//! active may share, read and list; replacing or removing needs the author or an admin. Every
//! change is a `skill_changed` event to each connected member.

use claudemesh_protocol::frames::{
    ErrorCode, Event, Role, ServerFrame, Skill, SkillAction, SkillRecord, SkillSummary, encode,
};
use claudemesh_protocol::limits::MAX_SKILLS_PER_MESH;
use claudemesh_protocol::sharing::{skill_matches, validate_skill};

use crate::conn::Conn;
use crate::services::access::Who;
use crate::services::now_ms;
use crate::store::{SKILLS, key};

/// The caller as access rules see it, and its mesh id; `None` after answering why not.
fn who(conn: &Conn, req: u64) -> Option<(Who, String)> {
    let a = conn.auth.as_ref()?;
    match Who::of(&a.mesh.lock(), &a.member_id) {
        Some(w) => Some((w, a.mesh.id.clone())),
        None => {
            conn.error(
                Some(req),
                ErrorCode::Revoked,
                format!("member {} is not an active member", a.member_id),
            );
            None
        }
    }
}

/// Tells every connected member of the caller's mesh.
fn announce(conn: &Conn, name: String, action: SkillAction) {
    let Some(a) = conn.auth.as_ref() else { return };
    let st = a.mesh.lock();
    let frame = encode(&ServerFrame::Event(Event::SkillChanged { name, action }));
    let members: Vec<String> = st.conns.keys().cloned().collect();
    for m in members {
        st.send_to(&m, frame.clone(), "event");
    }
}

/// Why a share or remove was refused inside the store transaction.
enum Refusal {
    NotAuthor(String),
    Full,
    Missing,
}

fn refusal(conn: &Conn, req: u64, name: &str, r: Refusal) {
    match r {
        Refusal::NotAuthor(author) => conn.error(
            Some(req),
            ErrorCode::Forbidden,
            format!("skill {name} was shared by member {author}; only its author or an admin may change it"),
        ),
        Refusal::Full => conn.error(
            Some(req),
            ErrorCode::Limit,
            format!("this mesh has {MAX_SKILLS_PER_MESH} skills, the most allowed; remove one first"),
        ),
        Refusal::Missing => {
            conn.error(Some(req), ErrorCode::NotFound, format!("no skill {name} in this mesh"))
        }
    }
}

/// `skill_share`: create, or replace as its author or an admin.
pub async fn share(conn: &mut Conn, req: u64, skill: Skill) {
    let Some((who, mesh)) = who(conn, req) else { return };
    if let Err(e) = validate_skill(&skill) {
        return conn.error(Some(req), e.code, e.message);
    }
    let name = skill.name.clone();
    let k = key(&[&mesh, &name]);
    let rec = SkillRecord { skill, author: who.member_id.clone(), updated_at: now_ms() };
    let r = conn
        .hub
        .store
        .write(move |tx, _| {
            match tx.get::<SkillRecord>(SKILLS, &k)? {
                Some(old) if old.author != who.member_id && who.role != Role::Admin => {
                    return Ok(Err(Refusal::NotAuthor(old.author)));
                }
                // An admin replacing it keeps the original author.
                Some(old) => {
                    let rec = SkillRecord { author: old.author, ..rec };
                    tx.put(SKILLS, &k, &rec)?;
                }
                None => {
                    if tx.scan(SKILLS, &mesh)?.len() >= MAX_SKILLS_PER_MESH {
                        return Ok(Err(Refusal::Full));
                    }
                    tx.put(SKILLS, &k, &rec)?;
                }
            }
            Ok(Ok(()))
        })
        .await;
    match r {
        Ok(Ok(())) => {
            conn.reply(&ServerFrame::Ok { req });
            announce(conn, name, SkillAction::Shared);
        }
        Ok(Err(why)) => refusal(conn, req, &name, why),
        Err(e) => {
            conn.error(Some(req), ErrorCode::Internal, format!("skill {name} could not be stored: {e}"))
        }
    }
}

/// `skill_get`.
pub async fn get(conn: &mut Conn, req: u64, name: String) {
    let Some((_, mesh)) = who(conn, req) else { return };
    match conn.hub.store.get_blocking::<SkillRecord>(SKILLS, key(&[&mesh, &name])).await {
        Ok(Some(skill)) => conn.reply(&ServerFrame::Skill { req, skill }),
        Ok(None) => refusal(conn, req, &name, Refusal::Missing),
        Err(e) => conn.error(Some(req), ErrorCode::Internal, format!("skill {name} could not be read: {e}")),
    }
}

/// `skill_list`: summaries of the skills matching `query`, by name.
pub async fn list(conn: &mut Conn, req: u64, query: Option<String>) {
    let Some((_, mesh)) = who(conn, req) else { return };
    let rows = match conn.hub.store.scan_blocking(SKILLS, mesh).await {
        Ok(rows) => rows,
        Err(e) => {
            return conn.error(Some(req), ErrorCode::Internal, format!("skills could not be read: {e}"));
        }
    };
    let q = query.unwrap_or_default();
    let skills = rows
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<SkillRecord>(v).ok())
        .filter(|r| skill_matches(&r.skill.name, &r.skill.description, &r.skill.tags, &q))
        .map(|r| SkillSummary {
            name: r.skill.name,
            description: r.skill.description,
            tags: r.skill.tags,
            author: r.author,
            updated_at: r.updated_at,
        })
        .collect();
    conn.reply(&ServerFrame::Skills { req, skills });
}

/// `skill_remove`: its author or an admin.
pub async fn remove(conn: &mut Conn, req: u64, name: String) {
    let Some((who, mesh)) = who(conn, req) else { return };
    let k = key(&[&mesh, &name]);
    let r = conn
        .hub
        .store
        .write(move |tx, _| match tx.get::<SkillRecord>(SKILLS, &k)? {
            None => Ok(Err(Refusal::Missing)),
            Some(old) if old.author != who.member_id && who.role != Role::Admin => {
                Ok(Err(Refusal::NotAuthor(old.author)))
            }
            Some(_) => {
                tx.remove(SKILLS, &k)?;
                Ok(Ok(()))
            }
        })
        .await;
    match r {
        Ok(Ok(())) => {
            conn.reply(&ServerFrame::Ok { req });
            announce(conn, name, SkillAction::Removed);
        }
        Ok(Err(why)) => refusal(conn, req, &name, why),
        Err(e) => {
            conn.error(Some(req), ErrorCode::Internal, format!("skill {name} could not be removed: {e}"))
        }
    }
}
