//! The variables a template sees for one row: every CSV column by name, plus
//! `row`, `job` and `columns`.
//!
//! A minijinja object rather than a map value: building two maps per row
//! (the top level and `columns`) and comparing string keys on every lookup
//! was a tenth of the rendering time; here a row costs one vector of values
//! and a lookup is a scan over a handful of column names.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::Value;

use crate::compose::recipients::Recipient;

/// The names the context defines besides the columns; they win over a column
/// of the same name.
const BUILTINS: [&str; 3] = ["row", "job", "columns"];

/// One row's data, shared by the context and its `columns` view.
#[derive(Debug)]
struct RowVars {
    headers: Arc<Vec<String>>,
    values: Vec<Value>,
    row: u64,
    job: Value,
}

impl RowVars {
    fn column(&self, name: &str) -> Option<Value> {
        // Length and first byte rule out most names before comparing bytes.
        let first = name.as_bytes().first();
        let i = self
            .headers
            .iter()
            .position(|h| h.len() == name.len() && h.as_bytes().first() == first && h == name)?;
        self.values.get(i).cloned()
    }
}

/// The template context of one row.
#[derive(Debug)]
struct RowContext(Arc<RowVars>);

/// `columns`: the columns alone, for names that are not identifiers
/// (`columns["first name"]`).
#[derive(Debug)]
struct Columns(Arc<RowVars>);

/// The context value for `rec`, with the job's `vars` as `job`.
pub(super) fn row_context(rec: &Recipient, job: &Value) -> Value {
    let vars = RowVars {
        headers: Arc::clone(&rec.headers),
        values: rec.values.iter().map(Value::from).collect(),
        row: rec.row,
        job: job.clone(),
    };
    Value::from_object(RowContext(Arc::new(vars)))
}

impl Object for RowContext {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        match key {
            "row" => Some(Value::from(self.0.row)),
            "job" => Some(self.0.job.clone()),
            "columns" => Some(Value::from_object(Columns(Arc::clone(&self.0)))),
            _ => self.0.column(key),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let columns = self.0.headers.iter().map(String::as_str);
        let mut keys: Vec<&str> = columns.filter(|h| !BUILTINS.contains(h)).collect();
        keys.extend(BUILTINS);
        Enumerator::Values(keys.into_iter().map(Value::from).collect())
    }
}

impl Object for Columns {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.column(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.0.column(key)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.0
                .headers
                .iter()
                .map(|h| Value::from(h.as_str()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::Environment;

    fn recipient(headers: &[&str], values: &[&str]) -> Recipient {
        Recipient {
            row: 7,
            line: 8,
            email: values[0].to_string(),
            headers: Arc::new(headers.iter().map(|h| h.to_string()).collect()),
            values: values.iter().map(|v| v.to_string()).collect(),
            duplicate_of: None,
        }
    }

    fn render(source: &str, rec: &Recipient) -> Result<String, minijinja::Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template("t", source)?;
        let job = Value::from_serialize(std::collections::BTreeMap::from([("year", 2026)]));
        env.get_template("t")?.render(row_context(rec, &job))
    }

    #[test]
    fn columns_row_and_job_are_visible() {
        let rec = recipient(
            &["email", "first name", "row"],
            &["a@x.example", "Ada", "csv"],
        );
        let out = render(
            "{{ email }}|{{ columns['first name'] }}|{{ row }}|{{ columns.row }}|{{ job.year }}",
            &rec,
        )
        .unwrap();
        assert_eq!(out, "a@x.example|Ada|7|csv|2026");
    }

    #[test]
    fn a_missing_column_is_undefined_and_strict_mode_refuses_it() {
        let rec = recipient(&["email"], &["a@x.example"]);
        let err = render("{{ nope }}", &rec).unwrap_err();
        assert_eq!(err.kind(), minijinja::ErrorKind::UndefinedError);
        assert!(render("{{ columns.nope }}", &rec).is_err());
        assert_eq!(
            render(
                "{{ 'y' if nope is defined else 'n' }}{{ 'y' if email is defined else 'n' }}",
                &rec
            )
            .unwrap(),
            "ny"
        );
    }

    #[test]
    fn columns_iterate_in_file_order() {
        let rec = recipient(&["email", "b", "a"], &["a@x.example", "2", "1"]);
        let out = render(
            "{% for k, v in columns|items %}{{ k }}={{ v }};{% endfor %}",
            &rec,
        )
        .unwrap();
        assert_eq!(out, "email=a@x.example;b=2;a=1;");
    }
}
