//! What the broker checks of a deploy's secrets (DESIGN §8) without being able to open them:
//! every `$vault:` reference in the environment is well formed and has a sealed value, and
//! each sealed value has the shape of a `crypto_box_seal` of at most a vault value's size.
//! Sealed values nothing references are dropped, not stored.

use std::collections::BTreeMap;

use claudemesh_protocol::codec::from_b64;
use claudemesh_protocol::frames::SealedSecret;
use claudemesh_protocol::limits::MAX_VAULT_VALUE_BYTES;
use claudemesh_protocol::vault_ref::referenced_keys;

/// Bytes `crypto_box_seal` adds: an ephemeral public key and a MAC.
const SEAL_OVERHEAD: usize = 48;

/// The sealed values `env` references, in key order; the error names the variable or key.
pub fn check(env: &BTreeMap<String, String>, secrets: &[SealedSecret]) -> Result<Vec<SealedSecret>, String> {
    let keys = referenced_keys(env).map_err(|(var, e)| format!("environment variable {var}: {e}"))?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(s) = secrets.iter().find(|s| s.key == key) else {
            return Err(format!(
                "the environment references vault key {key}, but no sealed value for it came with the \
                 request; deploy through claudemesh, which seals it from your vault"
            ));
        };
        let ok = from_b64("sealed", &s.sealed)
            .is_ok_and(|b| b.len() >= SEAL_OVERHEAD && b.len() <= SEAL_OVERHEAD + MAX_VAULT_VALUE_BYTES);
        if !ok {
            return Err(format!("the sealed value of vault key {key} is malformed"));
        }
        out.push(s.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use claudemesh_protocol::codec::to_b64;

    use super::*;

    fn sealed(key: &str, n: usize) -> SealedSecret {
        SealedSecret { key: key.into(), sealed: to_b64(&vec![7u8; n]) }
    }

    #[test]
    fn keeps_referenced_and_refuses_missing_or_malformed() {
        let env: BTreeMap<String, String> =
            [("A".to_string(), "$vault:K".to_string()), ("B".to_string(), "plain".to_string())].into();
        let kept = check(&env, &[sealed("K", 60), sealed("UNUSED", 60)]).unwrap();
        assert_eq!(kept.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(), vec!["K"]);
        assert!(check(&env, &[]).unwrap_err().contains("vault key K"));
        assert!(check(&env, &[sealed("K", 10)]).unwrap_err().contains("malformed"));
        let bad: BTreeMap<String, String> = [("X".to_string(), "pre$vault:K".to_string())].into();
        assert!(check(&bad, &[]).unwrap_err().contains("variable X"));
        assert!(check(&BTreeMap::new(), &[sealed("K", 60)]).unwrap().is_empty());
    }
}
