//! Where personal data can sit in what the engine stores and publishes: a task's context and
//! its steps' results, errors and approval requests; a transition's reason, error and step
//! status; an event's payload. One walk over each record, shared by sealing (before the
//! store), opening (the engine's own reads) and revealing (a reader's view).

use crate::model::{Approval, ErrorInfo, Event, StepStatus, Task, Transition};
use serde_json::Value;

/// What a walk does at each place personal data may be.
pub trait Pass {
    /// A JSON value (a context, results, a payload): any string in it, or a whole value.
    fn value(&mut self, value: &mut Value);
    /// Free text (a reason, an error message, an approval's summary).
    fn text(&mut self, text: &mut String);
    /// An approval request's amount: sealed into `sealed` (a token), or opened back.
    fn amount(&mut self, amount: &mut Option<i64>, sealed: &mut Option<String>);
}

fn error(info: &mut Option<ErrorInfo>, pass: &mut dyn Pass) {
    if let Some(e) = info {
        pass.text(&mut e.message);
    }
}

fn approval(approval: &mut Option<Approval>, pass: &mut dyn Pass) {
    let Some(a) = approval else { return };
    let r = &mut a.request;
    pass.text(&mut r.summary);
    for text in [&mut r.ticket, &mut r.customer, &mut r.policy_notes]
        .into_iter()
        .flatten()
    {
        pass.text(text);
    }
    pass.amount(&mut r.amount, &mut r.sealed_amount);
    if let Some(note) = a.decision.as_mut().and_then(|d| d.note.as_mut()) {
        pass.text(note);
    }
}

fn results(results: &mut Option<Value>, pass: &mut dyn Pass) {
    if let Some(v) = results {
        pass.value(v);
    }
}

/// A whole task: context and every step.
pub fn task(task: &mut Task, pass: &mut dyn Pass) {
    pass.value(&mut task.context);
    for step in &mut task.steps {
        results(&mut step.results, pass);
        error(&mut step.last_error, pass);
        approval(&mut step.approval, pass);
    }
}

/// A step's status as a transition carries it.
pub fn status(status: &mut StepStatus, pass: &mut dyn Pass) {
    results(&mut status.results, pass);
    error(&mut status.last_error, pass);
    approval(&mut status.approval, pass);
}

pub fn transition(t: &mut Transition, pass: &mut dyn Pass) {
    if let Some(reason) = &mut t.reason {
        pass.text(reason);
    }
    error(&mut t.error, pass);
    if let Some(s) = &mut t.step {
        status(s, pass);
    }
}

pub fn event(e: &mut Event, pass: &mut dyn Pass) {
    pass.value(&mut e.payload);
}

/// Every scalar inside `value` (string, number, bool, null), with the key it is under.
pub fn scalars(value: &mut Value, key: Option<&str>, f: &mut dyn FnMut(Option<&str>, &mut Value)) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                scalars(v, Some(k), f);
            }
        }
        Value::Array(items) => {
            for v in items {
                scalars(v, key, f);
            }
        }
        _ => f(key, value),
    }
}
