//! Data classification (post 06): a workflow's input schema marks fields with
//! `x-data-classification` (`public`, `internal`, `confidential`, `restricted`) and `x-pii`
//! (`identifier`, `contact`, `financial`). Unmarked fields are `internal`; a field marked PII
//! is at least `confidential` (`financial`: `restricted`), as post 06's `DataClassification`
//! ranks them (`../shared/reference/tasker-blog-facts.md` §8). A task's classification is the
//! highest of the fields its context holds.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How sensitive data is, lowest first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    Public,
    #[default]
    Internal,
    Confidential,
    Restricted,
}

impl Classification {
    pub const ALL: [Classification; 4] = [
        Classification::Public,
        Classification::Internal,
        Classification::Confidential,
        Classification::Restricted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Public => "public",
            Classification::Internal => "internal",
            Classification::Confidential => "confidential",
            Classification::Restricted => "restricted",
        }
    }
}

impl std::fmt::Display for Classification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of personal data a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pii {
    /// Names a person: a customer id, a name.
    Identifier,
    /// Reaches a person: an email, a phone number, an address.
    Contact,
    /// A person's money: card, bank and payment data, amounts.
    Financial,
}

impl Pii {
    fn parse(text: &str) -> Option<Pii> {
        match text {
            "identifier" => Some(Pii::Identifier),
            "contact" => Some(Pii::Contact),
            "financial" => Some(Pii::Financial),
            _ => None,
        }
    }

    /// The least classification a field of this kind has.
    pub fn floor(self) -> Classification {
        match self {
            Pii::Financial => Classification::Restricted,
            Pii::Identifier | Pii::Contact => Classification::Confidential,
        }
    }
}

/// One marked field of an input schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Where it is in a context: `customer_email`, `customer_info.email`, `cart_items[].name`.
    pub path: String,
    pub level: Classification,
    pub pii: Option<Pii>,
    /// Marked `x-data-subject: true`: its value names the person the task is about (their
    /// email or customer id), whose key seals the task's personal data (`crate::privacy`).
    pub subject: bool,
}

/// The marked fields of `schema`, or every mistake with the schema path it is at
/// (`properties.customer_email.x-pii`) and what was expected.
pub fn fields_of(schema: &Value) -> Result<Vec<Field>, Vec<(String, String)>> {
    let mut fields = Vec::new();
    let mut errors = Vec::new();
    walk(schema, "", "", &mut fields, &mut errors);
    // One identifier names the person: two would let a task join two people's records (an
    // id of one and an email of another), and an export or erasure of one reach the other.
    let subjects: Vec<&Field> = fields.iter().filter(|f| f.subject).collect();
    if let [first, second, ..] = subjects.as_slice() {
        let at: Vec<String> = second
            .path
            .split('.')
            .map(|part| match part.strip_suffix("[]") {
                Some(name) => format!("properties.{name}.items"),
                None => format!("properties.{part}"),
            })
            .collect();
        errors.push((
            format!("{}.x-data-subject", at.join(".")),
            format!(
                "a task is about one person, named by one field: `{}` is marked already",
                first.path
            ),
        ));
    }
    if errors.is_empty() {
        Ok(fields)
    } else {
        Err(errors)
    }
}

fn walk(schema: &Value, path: &str, at: &str, fields: &mut Vec<Field>, errors: &mut Vec<(String, String)>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    // Markings are honoured on named fields (`properties`, through `items`) only; one anywhere
    // else would look like protection and be none, so it is refused.
    for (key, sub) in object {
        if !matches!(key.as_str(), "properties" | "items") && !MARKS.contains(&key.as_str()) {
            let at = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            refuse_marks(sub, &at, errors);
        }
    }
    if path.is_empty() {
        for mark in MARKS.iter().filter(|m| object.contains_key(**m)) {
            let at = if at.is_empty() {
                (*mark).to_string()
            } else {
                format!("{at}.{mark}")
            };
            errors.push((at, "a marking is honoured on a named field only (under `properties`), not on a whole schema or list".into()));
        }
    }
    if !path.is_empty() {
        let level = match object.get("x-data-classification") {
            None => None,
            Some(v) => match v
                .as_str()
                .and_then(|s| Classification::ALL.into_iter().find(|c| c.as_str() == s))
            {
                Some(c) => Some(c),
                None => {
                    errors.push((
                        format!("{at}.x-data-classification"),
                        format!("{v} is not a classification: expected public, internal, confidential or restricted"),
                    ));
                    None
                }
            },
        };
        let pii = match object.get("x-pii") {
            None => None,
            Some(v) => {
                match v.as_str().and_then(Pii::parse) {
                    Some(p) => Some(p),
                    None => {
                        errors.push((
                        format!("{at}.x-pii"),
                        format!("{v} is not a kind of personal data: expected identifier, contact or financial"),
                    ));
                        None
                    }
                }
            }
        };
        let scalar = matches!(
            object.get("type").and_then(Value::as_str),
            Some("string" | "integer")
        );
        let subject = match object.get("x-data-subject") {
            None | Some(Value::Bool(false)) => false,
            // One value names one person: a list (or an object) of them would join several
            // people's records under one key.
            Some(Value::Bool(true)) if path.contains("[]") || !scalar => {
                errors.push((
                    format!("{at}.x-data-subject"),
                    "the field naming the data subject holds one person's email or id: `type: string` or `type: integer`, not in a list".into(),
                ));
                false
            }
            Some(Value::Bool(true)) if pii.is_some() => true,
            Some(Value::Bool(true)) => {
                errors.push((
                    format!("{at}.x-data-subject"),
                    "a field naming the data subject is personal data: mark it `x-pii: identifier` (or contact) too".into(),
                ));
                false
            }
            Some(v) => {
                errors.push((
                    format!("{at}.x-data-subject"),
                    format!("{v} is not true or false"),
                ));
                false
            }
        };
        if level.is_some() || pii.is_some() {
            let level = level
                .unwrap_or_default()
                .max(pii.map_or(Classification::Public, Pii::floor));
            fields.push(Field {
                path: path.to_string(),
                level,
                pii,
                subject,
            });
        }
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, sub) in properties {
            let path = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            let at = if at.is_empty() {
                format!("properties.{name}")
            } else {
                format!("{at}.properties.{name}")
            };
            walk(sub, &path, &at, fields, errors);
        }
    }
    if let Some(items) = object.get("items") {
        let at = if at.is_empty() {
            "items".to_string()
        } else {
            format!("{at}.items")
        };
        walk(items, &format!("{path}[]"), &at, fields, errors);
    }
}

const MARKS: [&str; 3] = ["x-data-classification", "x-pii", "x-data-subject"];

/// Every marking inside `value` (a part of a schema the classification does not read) is an
/// error at its path.
fn refuse_marks(value: &Value, at: &str, errors: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, sub) in map {
                let here = format!("{at}.{key}");
                if MARKS.contains(&key.as_str()) {
                    errors.push((
                        here,
                        "markings are honoured under `properties` and `items` only; mark the named fields instead".into(),
                    ));
                } else {
                    refuse_marks(sub, &here, errors);
                }
            }
        }
        Value::Array(items) => {
            for (i, sub) in items.iter().enumerate() {
                refuse_marks(sub, &format!("{at}[{i}]"), errors);
            }
        }
        _ => {}
    }
}

/// Whether `context` holds a value (not `null`) at `path`.
pub fn holds(context: &Value, path: &str) -> bool {
    fn at(value: &Value, parts: &[&str]) -> bool {
        let Some((first, rest)) = parts.split_first() else {
            return !value.is_null();
        };
        match first.strip_suffix("[]") {
            Some(name) => value
                .get(name)
                .and_then(Value::as_array)
                .is_some_and(|items| items.iter().any(|item| at(item, rest))),
            None => value.get(*first).is_some_and(|v| at(v, rest)),
        }
    }
    // `a[].b` splits as `a[]`, `b`.
    let parts: Vec<&str> = path.split('.').collect();
    at(context, &parts)
}

/// The classification of a task whose context is `context`: the highest of the marked fields
/// it holds, `internal` when it holds none.
pub fn classify(fields: &[Field], context: &Value) -> Classification {
    fields
        .iter()
        .filter(|f| holds(context, &f.path))
        .map(|f| f.level)
        .max()
        .unwrap_or_default()
        .max(Classification::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_scalar_field_names_the_data_subject() {
        let subject = |props: serde_json::Value| fields_of(&json!({ "properties": props }));
        let ok =
            subject(json!({ "email": { "type": "string", "x-pii": "contact", "x-data-subject": true } }))
                .unwrap();
        assert!(ok[0].subject);
        let refused = [
            json!({ "email": { "type": "string", "x-pii": "contact", "x-data-subject": true },
                    "id": { "type": "string", "x-pii": "identifier", "x-data-subject": true } }),
            json!({ "emails": { "type": "array", "items": { "type": "string", "x-pii": "contact", "x-data-subject": true } } }),
            json!({ "who": { "type": "object", "x-pii": "contact", "x-data-subject": true } }),
            json!({ "email": { "x-pii": "contact", "x-data-subject": true } }),
            json!({ "email": { "type": "string", "x-data-subject": true } }),
            json!({ "email": { "type": "string", "x-pii": "contact", "x-data-subject": "yes" } }),
        ];
        for props in refused {
            let errors = subject(props.clone()).unwrap_err();
            assert!(
                errors.iter().any(|(at, _)| at.ends_with("x-data-subject")),
                "{props}: {errors:?}"
            );
        }
    }

    #[test]
    fn fields_are_found_at_any_depth_and_pii_raises_their_level() {
        let schema = json!({
            "type": "object",
            "properties": {
                "ticket_id": { "type": "string", "x-data-classification": "internal" },
                "customer_email": { "type": "string", "x-pii": "contact" },
                "refund_amount": { "type": "integer", "x-pii": "financial" },
                "notes": { "type": "string", "x-data-classification": "public", "x-pii": "identifier" },
                "customer_info": { "type": "object", "properties": { "name": { "x-pii": "identifier" } } },
                "cart_items": { "type": "array", "items": { "properties": { "name": { "x-data-classification": "public" } } } }
            }
        });
        let fields = fields_of(&schema).unwrap();
        let level = |p: &str| fields.iter().find(|f| f.path == p).unwrap().level;
        assert_eq!(level("customer_email"), Classification::Confidential);
        assert_eq!(level("refund_amount"), Classification::Restricted);
        assert_eq!(
            level("notes"),
            Classification::Confidential,
            "PII is never public"
        );
        assert_eq!(level("customer_info.name"), Classification::Confidential);
        assert_eq!(level("cart_items[].name"), Classification::Public);

        assert_eq!(
            classify(&fields, &json!({ "ticket_id": "T-1" })),
            Classification::Internal
        );
        assert_eq!(
            classify(&fields, &json!({ "customer_email": "a@b.c" })),
            Classification::Confidential
        );
        assert_eq!(
            classify(
                &fields,
                &json!({ "customer_email": "a@b.c", "refund_amount": 10 })
            ),
            Classification::Restricted
        );
        assert_eq!(
            classify(&fields, &json!({ "customer_email": null })),
            Classification::Internal
        );
        assert_eq!(
            classify(&fields, &json!({ "customer_info": { "name": "Ann" } })),
            Classification::Confidential
        );
        assert_eq!(classify(&[], &json!({})), Classification::Internal);
    }

    #[test]
    fn unknown_values_are_refused_with_their_schema_path() {
        let schema = json!({ "properties": {
            "a": { "x-data-classification": "secret" },
            "b": { "properties": { "c": { "x-pii": "health" } } },
            "d": { "x-data-classification": 3 }
        }});
        let errors = fields_of(&schema).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "properties.a.x-data-classification",
                "properties.b.properties.c.x-pii",
                "properties.d.x-data-classification"
            ]
        );
        assert!(
            errors[0].1.contains("\"secret\" is not a classification"),
            "{}",
            errors[0].1
        );
        // Where no field is named, a marking would protect nothing: refused.
        let schema = json!({
            "x-data-classification": "restricted",
            "additionalProperties": { "x-pii": "financial" },
            "properties": { "a": { "oneOf": [ { "x-pii": "contact" } ] }, "b": { "x-pii": "contact", "description": "x-pii" } }
        });
        let errors = fields_of(&schema).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "additionalProperties.x-pii",
                "x-data-classification",
                "properties.a.oneOf[0].x-pii",
            ]
        );
    }
}
