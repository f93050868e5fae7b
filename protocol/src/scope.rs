//! Service visibility scopes (DESIGN §7) and the one access check every service verb uses.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use crate::frames::{GroupRole, Role};

/// Who may see and call a service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// The deployer only (the default).
    #[default]
    Peer,
    /// Every member of the mesh.
    Mesh,
    /// These member ids.
    Members(Vec<String>),
    /// Members granted this group (by invite or admin; not session-declared groups).
    Group(String),
    /// Members granted any of these groups.
    Groups(Vec<String>),
    /// Members with this mesh role.
    Role(Role),
}

/// A scope's JSON form was not one of the six shapes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid scope: {0}; expected \"peer\", \"mesh\", {{\"members\":[…]}}, {{\"group\":\"g\"}}, {{\"groups\":[…]}} or {{\"role\":\"admin|member\"}}"
)]
pub struct ScopeError(String);

impl Scope {
    pub fn to_json(&self) -> Value {
        match self {
            Scope::Peer => json!("peer"),
            Scope::Mesh => json!("mesh"),
            Scope::Members(m) => json!({ "members": m }),
            Scope::Group(g) => json!({ "group": g }),
            Scope::Groups(g) => json!({ "groups": g }),
            Scope::Role(r) => json!({ "role": r.as_str() }),
        }
    }

    pub fn from_json(v: &Value) -> Result<Self, ScopeError> {
        let strings = |v: &Value| -> Result<Vec<String>, ScopeError> {
            v.as_array()
                .ok_or_else(|| ScopeError("expected a list".into()))?
                .iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(|| ScopeError("expected strings".into())))
                .collect()
        };
        match v {
            Value::String(s) if s == "peer" => Ok(Scope::Peer),
            Value::String(s) if s == "mesh" => Ok(Scope::Mesh),
            Value::String(s) => Err(ScopeError(format!("unknown scope {s:?}"))),
            Value::Object(m) if m.len() == 1 => {
                let (k, val) = m.iter().next().ok_or_else(|| ScopeError("empty object".into()))?;
                match k.as_str() {
                    "members" => Ok(Scope::Members(strings(val)?)),
                    "groups" => {
                        let gs = strings(val)?;
                        for g in &gs {
                            crate::names::validate_group_name(g).map_err(|e| ScopeError(e.to_string()))?;
                        }
                        Ok(Scope::Groups(gs))
                    }
                    "group" => {
                        let g = val.as_str().ok_or_else(|| ScopeError("group must be a string".into()))?;
                        crate::names::validate_group_name(g).map_err(|e| ScopeError(e.to_string()))?;
                        Ok(Scope::Group(g.to_string()))
                    }
                    "role" => match val.as_str() {
                        Some("admin") => Ok(Scope::Role(Role::Admin)),
                        Some("member") => Ok(Scope::Role(Role::Member)),
                        _ => Err(ScopeError("role must be \"admin\" or \"member\"".into())),
                    },
                    other => Err(ScopeError(format!("unknown key {other:?}"))),
                }
            }
            _ => Err(ScopeError("wrong shape".into())),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Peer => f.write_str("peer"),
            Scope::Mesh => f.write_str("mesh"),
            Scope::Members(m) => write!(f, "members:{}", m.join(",")),
            Scope::Group(g) => write!(f, "group:{g}"),
            Scope::Groups(g) => write!(f, "groups:{}", g.join(",")),
            Scope::Role(r) => write!(f, "role:{}", r.as_str()),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Scope::from_json(&v).map_err(serde::de::Error::custom)
    }
}

/// Whether `member` (with its admin- or invite-granted `member_groups` and mesh `member_role`)
/// may see and call a service deployed by `deployer` under `scope`. The deployer always may.
pub fn can_access(
    scope: &Scope,
    deployer: &str,
    member: &str,
    member_groups: &[GroupRole],
    member_role: Role,
) -> bool {
    if member == deployer {
        return true;
    }
    let in_group = |g: &str| member_groups.iter().any(|mg| mg.name == g);
    match scope {
        Scope::Peer => false,
        Scope::Mesh => true,
        Scope::Members(ids) => ids.iter().any(|id| id == member),
        Scope::Group(g) => in_group(g),
        Scope::Groups(gs) => gs.iter().any(|g| in_group(g)),
        Scope::Role(r) => *r == member_role,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms_round_trip() {
        let cases = [
            (Scope::Peer, json!("peer")),
            (Scope::Mesh, json!("mesh")),
            (Scope::Members(vec!["m1".into(), "m2".into()]), json!({"members":["m1","m2"]})),
            (Scope::Group("ops".into()), json!({"group":"ops"})),
            (Scope::Groups(vec!["a".into(), "b".into()]), json!({"groups":["a","b"]})),
            (Scope::Role(Role::Admin), json!({"role":"admin"})),
        ];
        for (scope, js) in cases {
            assert_eq!(serde_json::to_value(&scope).unwrap(), js);
            assert_eq!(serde_json::from_value::<Scope>(js).unwrap(), scope);
        }
    }

    #[test]
    fn bad_json_forms_are_errors() {
        for bad in [
            json!("world"),
            json!(1),
            json!({}),
            json!({"group": 3}),
            json!({"group": "Bad Name"}),
            json!({"role": "owner"}),
            json!({"members": "m1"}),
            json!({"group":"a","role":"admin"}),
            json!({"teams":["a"]}),
        ] {
            let e = serde_json::from_value::<Scope>(bad.clone());
            assert!(e.is_err(), "{bad} should be refused");
        }
    }

    /// Every scope against every kind of member.
    #[test]
    fn truth_table() {
        let ops = [GroupRole::new("ops")];
        let dev = [GroupRole { name: "dev".into(), role: Some("lead".into()) }];
        let none: [GroupRole; 0] = [];
        // (member, groups, role)
        let deployer = ("dep", &none[..], Role::Member);
        let admin = ("adm", &none[..], Role::Admin);
        let op = ("op", &ops[..], Role::Member);
        let dv = ("dv", &dev[..], Role::Member);
        let listed = ("lst", &none[..], Role::Member);
        let who = [deployer, admin, op, dv, listed];
        let scopes = [
            (Scope::Peer, [true, false, false, false, false]),
            (Scope::Mesh, [true, true, true, true, true]),
            (Scope::Members(vec!["lst".into()]), [true, false, false, false, true]),
            (Scope::Members(vec![]), [true, false, false, false, false]),
            (Scope::Group("ops".into()), [true, false, true, false, false]),
            (Scope::Groups(vec!["ops".into(), "dev".into()]), [true, false, true, true, false]),
            (Scope::Groups(vec![]), [true, false, false, false, false]),
            (Scope::Role(Role::Admin), [true, true, false, false, false]),
            (Scope::Role(Role::Member), [true, false, true, true, true]),
        ];
        for (scope, expected) in scopes {
            for ((member, groups, role), want) in who.iter().zip(expected) {
                assert_eq!(
                    can_access(&scope, "dep", member, groups, *role),
                    want,
                    "scope {scope} member {member}"
                );
            }
        }
    }
}
