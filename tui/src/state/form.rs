//! Multi-field forms: the deploy form, the call form generated from a tool's JSON schema (one
//! field per property: text, number, integer, boolean and enum choices, nested values as raw
//! JSON) with the validation that turns the fields into a tool's `arguments`, and the vault and
//! skill forms. A masked field's text is never shown, never in `Debug`, and wiped when its
//! form goes.

use serde_json::{Map, Value};

use super::Field;

/// What a field takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Text,
    /// `K=V` pairs whose values are masked on screen.
    Secret,
    /// A secret value: one `•` per character on screen, never its text; taken out of the form
    /// when it is sent, and wiped when the form goes.
    Masked,
    Number,
    Integer,
    /// `true`/`false` (and empty when optional), cycled with space or ← →.
    Bool,
    /// One of these values (shown as JSON text; empty first when optional), cycled.
    Choice(Vec<Value>),
    /// Any JSON (objects, arrays, or types the form does not know).
    Json,
}

/// One field of a form.
#[derive(Clone, PartialEq, Eq)]
pub struct FormField {
    /// The property name (the key in the produced JSON).
    pub name: String,
    pub input: Input,
    pub required: bool,
    /// The schema's description, or what to type.
    pub hint: String,
    pub field: Field,
}

impl std::fmt::Debug for FormField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = matches!(self.input, Input::Masked | Input::Secret);
        f.debug_struct("FormField")
            .field("name", &self.name)
            .field("input", &self.input)
            .field("required", &self.required)
            .field("field", if secret { &"<redacted>" } else { &self.field })
            .finish_non_exhaustive()
    }
}

/// What a form's Enter does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormKind {
    /// Deploy a service to `mesh`.
    Deploy { mesh: String },
    /// Call `tool` of `service` on `mesh`.
    Call { mesh: String, service: String, tool: String },
    /// Set a vault entry of this member in `mesh`.
    VaultSet { mesh: String },
    /// Share a skill from a file or directory with `mesh`.
    SkillShare { mesh: String },
}

/// A dialog of several fields, Tab/↑/↓ between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub kind: FormKind,
    pub title: String,
    pub fields: Vec<FormField>,
    pub focus: usize,
    pub error: Option<String>,
    /// Its call is on the way.
    pub busy: bool,
}

impl Form {
    /// The field `name`.
    pub fn field(&self, name: &str) -> Option<&FormField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The field `name`, to change.
    pub fn field_mut(&mut self, name: &str) -> Option<&mut FormField> {
        self.fields.iter_mut().find(|f| f.name == name)
    }

    /// The trimmed text of field `name` ("" when there is none).
    pub fn text(&self, name: &str) -> &str {
        self.field(name).map_or("", |f| f.field.text.trim())
    }
}

/// A masked value is wiped from memory with its form (cancelled, sent, or replaced).
impl Drop for Form {
    fn drop(&mut self) {
        for f in &mut self.fields {
            if f.input == Input::Masked {
                zeroize::Zeroize::zeroize(&mut f.field.text);
            }
        }
    }
}

impl FormField {
    /// A field `name` of `input`, empty.
    pub fn new(name: &str, input: Input, required: bool, hint: &str) -> Self {
        FormField { name: name.into(), input, required, hint: hint.into(), field: Field::default() }
    }

    /// The values a Bool or Choice field cycles through (as typed in its text).
    pub fn choices(&self) -> Vec<String> {
        let mut v = match &self.input {
            Input::Bool => vec!["true".to_string(), "false".to_string()],
            Input::Choice(c) => c.iter().map(choice_text).collect(),
            _ => return Vec::new(),
        };
        if !self.required {
            v.insert(0, String::new());
        }
        v
    }

    /// Moves a Bool or Choice field to its next (`dir` 1) or previous (-1) value.
    pub fn cycle(&mut self, dir: isize) {
        let c = self.choices();
        if c.is_empty() {
            return;
        }
        let at = c.iter().position(|x| *x == self.field.text).map_or(-1, |i| i as isize);
        let next = (at + dir).rem_euclid(c.len() as isize) as usize;
        self.field = Field::new(c[next].clone());
    }

    /// The field's JSON value: `None` when empty (then required fields are an error).
    pub fn value(&self) -> Result<Option<Value>, String> {
        let t = self.field.text.trim();
        if t.is_empty() {
            let name = claudemesh_protocol::text::one_line(&self.name);
            return if self.required { Err(format!("{name} is required")) } else { Ok(None) };
        }
        let name = claudemesh_protocol::text::one_line(&self.name);
        let bad = |what: &str| format!("{name}: {t:?} is not {what}");
        let v = match &self.input {
            Input::Text | Input::Secret | Input::Masked => Value::String(self.field.text.clone()),
            Input::Integer => Value::from(t.parse::<i64>().map_err(|_| bad("an integer"))?),
            Input::Number => {
                let n: f64 = t.parse().map_err(|_| bad("a number"))?;
                serde_json::Number::from_f64(n).map(Value::Number).ok_or_else(|| bad("a finite number"))?
            }
            Input::Bool => match t {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(bad("true or false")),
            },
            Input::Choice(c) => {
                c.iter().find(|v| choice_text(v) == t).cloned().ok_or_else(|| bad("one of the choices"))?
            }
            Input::Json => serde_json::from_str(t).map_err(|e| format!("{name}: not JSON ({e})"))?,
        };
        Ok(Some(v))
    }
}

fn choice_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first type of a property's `type` (a string, or a list such as `["string","null"]`).
fn type_of(p: &Value) -> Option<&str> {
    match p.get("type")? {
        Value::String(s) => Some(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

/// The fields of a call form for a tool's `input_schema`: its properties in schema order,
/// required ones marked; a schema with no properties gives no field (a call without
/// arguments).
pub fn call_fields(schema: &Value) -> Vec<FormField> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return Vec::new() };
    props
        .iter()
        .map(|(name, p)| {
            let input = match (p.get("enum").and_then(Value::as_array), type_of(p)) {
                (Some(e), _) if !e.is_empty() => Input::Choice(e.clone()),
                (_, Some("string")) => Input::Text,
                (_, Some("integer")) => Input::Integer,
                (_, Some("number")) => Input::Number,
                (_, Some("boolean")) => Input::Bool,
                _ => Input::Json,
            };
            let desc = p.get("description").and_then(Value::as_str).unwrap_or_default();
            let hint = match (&input, type_of(p)) {
                (Input::Json, Some(t)) => format!("{t} as JSON. {desc}"),
                (Input::Json, None) => format!("JSON. {desc}"),
                _ => desc.to_string(),
            };
            let mut f = FormField::new(
                name,
                input,
                required.contains(&name.as_str()),
                &claudemesh_protocol::text::one_line(hint.trim()),
            );
            if let Some(d) = p.get("default") {
                f.field = Field::new(match (&f.input, d) {
                    (Input::Json, d) => d.to_string(),
                    (_, d) => choice_text(d),
                });
            } else if f.input == Input::Bool && f.required {
                f.field = Field::new("false");
            }
            f
        })
        .collect()
}

/// The `arguments` object of a call form, or the first field's error.
pub fn arguments(fields: &[FormField]) -> Result<Value, String> {
    let mut m = Map::new();
    for f in fields {
        if let Some(v) = f.value()? {
            m.insert(f.name.clone(), v);
        }
    }
    Ok(Value::Object(m))
}

/// A short summary of a schema's properties: `query: string*, limit: integer, mode: a|b`
/// (`*` marks required ones).
pub fn schema_summary(schema: &Value) -> String {
    let parts: Vec<String> = call_fields(schema)
        .iter()
        .map(|f| {
            let t = match &f.input {
                Input::Text | Input::Secret | Input::Masked => "string".to_string(),
                Input::Number => "number".into(),
                Input::Integer => "integer".into(),
                Input::Bool => "boolean".into(),
                Input::Choice(c) => c.iter().map(choice_text).collect::<Vec<_>>().join("|"),
                Input::Json => schema
                    .get("properties")
                    .and_then(|p| p.get(&f.name))
                    .and_then(type_of)
                    .unwrap_or("json")
                    .to_string(),
            };
            format!("{}{}: {t}", f.name, if f.required { "*" } else { "" })
        })
        .collect();
    if parts.is_empty() { "no arguments".into() } else { parts.join(", ") }
}

/// `K=V K2=V2` with every value replaced by `•` (keys stay readable).
pub fn mask_env(text: &str) -> String {
    text.split(' ')
        .map(|w| match w.split_once('=') {
            Some((k, v)) => format!("{k}={}", "•".repeat(v.chars().count())),
            None => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A scope typed as the CLI takes it (`peer`, `mesh`, `group:ops`, `groups:a,b`,
/// `role:admin`, `members:alice,bob`) as its JSON form, checked.
pub fn scope_json(text: &str) -> Result<Value, String> {
    let t = text.trim();
    let list = |v: &str| -> Vec<Value> {
        v.split(',').map(str::trim).filter(|x| !x.is_empty()).map(|x| Value::String(x.into())).collect()
    };
    let v = match t.split_once(':') {
        None => Value::String(t.to_string()),
        Some(("group", g)) => serde_json::json!({ "group": g.trim() }),
        Some(("groups", g)) => serde_json::json!({ "groups": list(g) }),
        Some(("role", r)) => serde_json::json!({ "role": r.trim() }),
        Some(("members", m)) => serde_json::json!({ "members": list(m) }),
        Some((k, _)) => {
            return Err(format!("{k:?}: expected peer, mesh, group:, groups:, role: or members:"));
        }
    };
    claudemesh_protocol::scope::Scope::from_json(&v).map_err(|e| e.to_string())?;
    Ok(v)
}
