//! How tasks look on the command line: tables for people, JSON for programs.

use crate::model::{format_timestamp, short_id, Task, Timestamp, Transition};
use serde_json::{json, Value};

/// A task as JSON: the documented fields, with times in RFC 3339.
pub fn task_json(task: &Task) -> Value {
    json!({
        "id": task.id,
        "namespace": task.namespace,
        "name": task.name,
        "version": task.version,
        "state": task.state,
        "health": task.health(),
        "classification": task.classification,
        "initiator": task.initiator,
        "context": task.context,
        "created_at": format_timestamp(task.created_at),
        "updated_at": format_timestamp(task.updated_at),
        "steps": task.steps.iter().map(|s| json!({
            "name": s.name,
            "handler": s.handler,
            "state": s.state,
            "attempts": s.attempts,
            "attempts_used": s.attempts_used(),
            "retry_limit": s.retry.limit,
            "retryable": s.retry.retryable,
            "depends_on": s.depends_on,
            "results": s.results,
            "last_error": s.last_error,
            "next_attempt_at": s.next_attempt_at.map(format_timestamp),
            "idempotency_key": s.idempotency_key,
        })).collect::<Vec<_>>(),
    })
}

pub fn transition_json(t: &Transition) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    // The step record is for replay after a crash; `steps` already shows it.
    if let Some(o) = v.as_object_mut() {
        o.remove("step");
    }
    v["at"] = json!(format_timestamp(t.at));
    v
}

pub fn tasks_table(tasks: &[Task], now: Timestamp) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "WORKFLOW".into(),
        "STATE".into(),
        "PROGRESS".into(),
        "HEALTH".into(),
        "AGE".into(),
    ]];
    for t in tasks {
        rows.push([
            short_id(&t.id).to_string(),
            t.workflow_ref(),
            t.state.to_string(),
            format!("{}/{}", t.done_steps(), t.steps.len()),
            t.health().to_string(),
            crate::model::age(now, t.created_at),
        ]);
    }
    table(&rows)
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn task_detail(task: &Task, transitions: &[Transition]) -> String {
    let mut out = format!(
        "task      {}\nworkflow  {}\nstate     {} ({})\nclass     {}\ninitiator {}\ncreated   {}\ncontext   {}\n\nsteps\n",
        task.id,
        task.workflow_ref(),
        task.state,
        task.health(),
        task.classification,
        super::one_line(&task.initiator),
        format_timestamp(task.created_at),
        task.context
    );
    let mut rows = vec![[
        "STEP".to_string(),
        "STATE".into(),
        "ATTEMPTS".into(),
        "DEPENDS ON".into(),
        "LAST ERROR".into(),
    ]];
    for s in &task.steps {
        let error = s
            .last_error
            .as_ref()
            .map(|e| {
                let code = e.code.as_deref().unwrap_or("-");
                super::one_line(&format!("{} {code}: {}", e.kind, e.message))
            })
            .unwrap_or_default();
        rows.push([
            s.name.clone(),
            s.state.to_string(),
            format!("{}/{}", s.attempts_used(), s.retry.limit),
            s.depends_on.join(", "),
            error,
        ]);
    }
    out.push_str(&table(&rows));
    out.push_str("\nresults\n");
    for s in &task.steps {
        if let Some(r) = &s.results {
            out.push_str(&format!("  {}: {}\n", s.name, r));
        }
    }
    out.push_str("\ntransitions\n");
    for t in transitions {
        out.push_str(&format!("  {}\n", transition_line(t)));
    }
    out
}

pub fn transition_line(t: &Transition) -> String {
    let subject = match &t.subject {
        crate::model::Subject::Task => "task".to_string(),
        crate::model::Subject::Step(s) => format!("step {s}"),
    };
    let mut line = format!(
        "{} {:<28} {} -> {}",
        format_timestamp(t.at),
        subject,
        t.from.as_deref().unwrap_or("(new)"),
        t.to
    );
    if t.attempt > 0 {
        line.push_str(&format!("  attempt {}", t.attempt));
    }
    line.push_str(&format!("  by {}", super::one_line(&t.actor)));
    if let Some(reason) = &t.reason {
        line.push_str(&format!("  ({})", super::one_line(reason)));
    }
    line
}
