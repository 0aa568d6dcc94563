//! One function per command. Each opens what it needs, calls the library, and prints through
//! `say!` (so a closed pipe or a full disk is an error, never a panic).

use super::session::{own, session};
use super::{load_catalog, output, registry, say, Cli, Command, TokenCommand};
use crate::auth::Identity;
use crate::client::{Client, NewTask, TaskQuery};
use crate::model::{short_id, TaskState};
use crate::workflow::{Catalog, Source};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn dispatch(cli: Cli, data: PathBuf) -> Result<i32> {
    let Some(command) = &cli.command else {
        return console(&cli, &data).await;
    };
    match command {
        Command::Validate { paths } => validate(&cli, paths),
        Command::Workflows => workflows(&cli),
        Command::Screencast {
            tape,
            output,
            last_frame,
        } => super::screencast::record(tape, output.as_deref(), *last_frame).await,
        Command::Submit {
            batch: Some(file),
            workflow,
            json,
            ..
        } => submit_batch(&cli, &data, file, workflow.as_deref(), *json).await,
        Command::Submit {
            workflow,
            context,
            context_file,
            wait,
            json,
            batch: None,
        } => {
            let workflow = workflow.as_deref().unwrap_or_default();
            let context = read_context(context.as_deref(), context_file.as_ref(), cli.max_context_bytes)?;
            if !context.is_object() {
                bail!("the task context must be a JSON object ({{…}})");
            }
            submit(&cli, &data, workflow, context, *wait, *json).await
        }
        Command::Run {
            until_idle,
            metrics_listen,
        } => run(&cli, &data, *until_idle, metrics_listen.as_deref()).await,
        Command::Serve => serve(&cli, &data).await,
        Command::Demo {
            rate,
            faults,
            seed,
            duration,
        } => demo_traffic(&cli, &data, *rate, *faults, *seed, *duration).await,
        Command::Token(TokenCommand::Issue {
            sub,
            team,
            role,
            ttl,
            mfa,
        }) => {
            // Signing identities is an admin's act: the local user without a token is one.
            let who = super::identity(&cli, &data)?;
            if who.role != crate::auth::Role::Admin {
                bail!("{} may not issue tokens: it takes an admin", who.describe());
            }
            let key = crate::auth::token::signing_key(&data)?;
            let mut identity = Identity::new(sub, team, *role);
            if *mfa {
                identity = identity.authenticated(crate::auth::Authn {
                    amr: vec!["pwd".into(), "mfa".into()],
                    auth_time: Some(chrono::Utc::now().timestamp_millis()),
                });
            }
            let token = crate::auth::token::issue(&key, &identity, *ttl)?;
            journal_issue(&cli, &data, &who.sub, &identity, &token, *ttl).await;
            say!("{token}");
            Ok(0)
        }
        Command::Token(TokenCommand::Show { token }) => token_show(&cli, &data, token.as_deref()),
        Command::Token(TokenCommand::RotateKey) => rotate_key(&cli, &data).await,
        Command::Audit(command) => super::audit::run(&cli, &data, command).await,
        Command::Gdpr(command) => super::gdpr::run(&cli, &data, command).await,
        Command::Store(super::StoreCommand::Copy { from, to, json }) => {
            super::store_copy::run(&cli, &data, from, to, *json).await
        }
        Command::Report(super::ReportCommand::Soc2 { from, to, format }) => {
            super::report::run(&cli, &data, from, to, *format).await
        }
        Command::Approvals { json } => approvals(&cli, &data, *json).await,
        Command::Approve { task, step, note } => {
            admin(
                &cli,
                &data,
                Admin::Decide {
                    task,
                    step,
                    approve: true,
                    note: note.clone(),
                },
            )
            .await
        }
        Command::Deny { task, step, reason } => {
            admin(
                &cli,
                &data,
                Admin::Decide {
                    task,
                    step,
                    approve: false,
                    note: Some(reason.clone()),
                },
            )
            .await
        }
        Command::Tasks {
            namespace,
            state,
            workflow,
            since,
            search,
            limit,
            all,
            cursor,
            json,
        } => {
            let listing = Listing {
                query: TaskQuery {
                    namespace: namespace.clone(),
                    state: *state,
                    workflow: workflow.clone(),
                    cursor: cursor.clone(),
                    search: search.clone(),
                    ..TaskQuery::default()
                },
                since: *since,
                limit: (!*all).then_some(*limit),
                json: *json,
            };
            tasks(&cli, &data, listing).await
        }
        Command::Show { task, json } => show(&cli, &data, task, *json).await,
        Command::Prune { before, dry_run } => prune(&cli, &data, *before, *dry_run).await,
        Command::Retry { task, reason } => admin(&cli, &data, Admin::Retry { task, reason }).await,
        Command::Cancel { task, reason } => admin(&cli, &data, Admin::Cancel { task, reason }).await,
        Command::RetryNow { task, step, reason } => {
            admin(&cli, &data, Admin::RetryNow { task, step, reason }).await
        }
        Command::Resolve {
            task,
            step,
            results,
            reason,
        } => {
            let results: Value = serde_json::from_str(results).context("--results is not valid JSON")?;
            admin(
                &cli,
                &data,
                Admin::Resolve {
                    task,
                    step,
                    results,
                    reason,
                },
            )
            .await
        }
    }
}

fn workflows(cli: &Cli) -> Result<i32> {
    let catalog = load_catalog(cli, &registry())?;
    for w in catalog.iter() {
        let t = &w.template;
        say!(
            "{:<48} {} steps  {}",
            t.reference(),
            t.steps.len(),
            t.description.as_deref().unwrap_or("")
        );
    }
    Ok(0)
}

async fn submit(
    cli: &Cli,
    data: &Path,
    workflow: &str,
    context: Value,
    wait: bool,
    json: bool,
) -> Result<i32> {
    let session = session(cli, data, wait, false).await?;
    let result = submit_with(&*session.client, workflow, context, wait, json).await;
    session.close(data, Duration::from_secs(10)).await;
    result
}

/// `submit --batch`: every line of a JSON Lines file becomes a task (up to 1,000 per group,
/// stored together), or is reported with why not; a bad line rejects nothing else. Exit 0
/// when every line made a task, 2 otherwise.
async fn submit_batch(
    cli: &Cli,
    data: &Path,
    file: &Path,
    workflow: Option<&str>,
    json: bool,
) -> Result<i32> {
    use std::io::BufRead;
    let input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot read {}", file.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let limit = cli.max_context_bytes.saturating_add(4096);
    let session = session(cli, data, false, false).await?;
    let result = async {
        let client = &session.client;
        let (mut created, mut failed) = (0usize, 0usize);
        let mut out = BatchReport::new(json);
        let mut report = |line: usize, outcome: Result<String, String>, out: &mut BatchReport| -> Result<()> {
            match &outcome {
                Ok(_) => created += 1,
                Err(_) => failed += 1,
            }
            out.line(line, outcome)
        };
        let mut group: Vec<(usize, NewTask)> = Vec::new();
        // Outcomes wait for their group, so the report follows the file's order.
        let mut outcomes: Vec<(usize, std::result::Result<String, String>)> = Vec::new();
        let mut input = input;
        let mut number = 0usize;
        loop {
            let next = read_line(&mut input, limit).map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
            if let Some(line) = &next {
                number += 1;
                let parsed = match line {
                    Line::Text(bytes) => parse_line(bytes, workflow),
                    Line::TooLong(n) => Err(format!(
                        "{n} bytes or more is more than a task context may have (--max-context-bytes)"
                    )),
                };
                match parsed {
                    Ok(None) => {}
                    Ok(Some(task)) => group.push((number, task)),
                    Err(e) => outcomes.push((number, Err(e))),
                }
            }
            if group.len() >= crate::client::MAX_BATCH || (next.is_none() && !group.is_empty()) {
                let (numbers, tasks): (Vec<usize>, Vec<NewTask>) =
                    std::mem::take(&mut group).into_iter().unzip();
                let items = match client.submit_batch(tasks).await {
                    Ok(items) => items,
                    Err(e) => {
                        // Lost mid-request: some of these may have been stored. Say which lines.
                        outcomes.sort_by_key(|(line, _)| *line);
                        for (line, outcome) in outcomes.drain(..) {
                            report(line, outcome, &mut out)?;
                        }
                        out.end()?;
                        let (first, last) = (numbers.first().copied().unwrap_or(0), numbers.last().copied().unwrap_or(0));
                        bail!(
                            "lines {first}–{last} were sent but not answered ({e}): some of them may have been created, so check with `taskdeck tasks` before sending them again; later lines were not sent"
                        );
                    }
                };
                for (line, item) in numbers.into_iter().zip(items) {
                    let outcome = match item {
                        crate::client::BatchItem::Created(t) => Ok(t.id),
                        crate::client::BatchItem::Failed(p) => Err(p.to_string()),
                    };
                    outcomes.push((line, outcome));
                }
            }
            if group.is_empty() && (next.is_none() || outcomes.len() >= crate::client::MAX_BATCH) {
                outcomes.sort_by_key(|(line, _)| *line);
                for (line, outcome) in outcomes.drain(..) {
                    report(line, outcome, &mut out)?;
                }
            }
            if next.is_none() {
                break;
            }
        }
        out.end()?;
        if !json {
            out.say(&format!("{created} task(s) created, {failed} line(s) refused"))?;
        }
        Ok(if failed == 0 { 0 } else { 2 })
    }
    .await;
    session.close(data, Duration::ZERO).await;
    result
}

/// The report of `submit --batch`, written as it goes (a line per outcome, or the elements of
/// one JSON array), so a million lines never sit in memory. Once the reader is gone (`| head`)
/// the report stops and the submission goes on: the tasks are the point, the report is not.
struct BatchReport {
    json: bool,
    started: bool,
    closed: bool,
}

impl BatchReport {
    fn new(json: bool) -> Self {
        BatchReport {
            json,
            started: false,
            closed: false,
        }
    }

    fn say(&mut self, text: &str) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        match super::write_line(format_args!("{text}")) {
            Ok(()) => Ok(()),
            Err(e) if super::is_broken_pipe(&e) => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn line(&mut self, line: usize, outcome: std::result::Result<String, String>) -> Result<()> {
        if !self.json {
            return match outcome {
                Ok(id) => self.say(&format!("line {line}: created {id}")),
                Err(e) => self.say(&format!("line {line}: {}", super::one_line(&e))),
            };
        }
        let item = match outcome {
            Ok(id) => serde_json::json!({ "line": line, "task": id }),
            Err(e) => serde_json::json!({ "line": line, "error": e }),
        };
        let lead = if self.started { "," } else { "[" };
        self.started = true;
        self.say(&format!("{lead}{}", serde_json::to_string(&item)?))
    }

    /// Closes the JSON array (`[]` when nothing was reported).
    fn end(&mut self) -> Result<()> {
        if !self.json {
            return Ok(());
        }
        let close = if self.started { "]" } else { "[]" };
        self.started = false;
        self.say(close)
    }
}

/// A line of a batch file, or how long it was past the limit (it is not kept).
enum Line {
    Text(Vec<u8>),
    TooLong(usize),
}

/// The next line (without its newline), holding at most `limit` bytes of it in memory; `None`
/// at the end of the input.
fn read_line(input: &mut dyn std::io::BufRead, limit: usize) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let mut seen = 0usize;
    let mut any = false;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(at) => (&buf[..at], Some(at + 1)),
            None => (buf, None),
        };
        seen = seen.saturating_add(chunk.len());
        if seen <= limit {
            line.extend_from_slice(chunk);
        }
        let used = done.unwrap_or(buf.len());
        input.consume(used);
        if done.is_some() {
            break;
        }
    }
    Ok(match (any, seen > limit) {
        (false, _) => None,
        (true, true) => Some(Line::TooLong(seen)),
        (true, false) => Some(Line::Text(line)),
    })
}

/// One line of a batch file: a context for `workflow`, or `{"workflow": …, "context": …}` (a
/// line with a `workflow` key is always the latter); `None` for a blank line.
fn parse_line(bytes: &[u8], workflow: Option<&str>) -> std::result::Result<Option<NewTask>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(mut map) = value else {
        return Err("expected a JSON object (a context, or {\"workflow\": …, \"context\": …})".into());
    };
    let named = match map.get("workflow") {
        None => None,
        Some(Value::String(w)) => {
            if let Some(other) = map.keys().find(|k| *k != "workflow" && *k != "context") {
                return Err(format!(
                    "unknown field `{}` beside `workflow` (a line naming its workflow has `workflow` and `context` only)",
                    crate::model::clip(other, 64)
                ));
            }
            Some(w.clone())
        }
        Some(_) => {
            return Err("`workflow` must be a string: NAMESPACE/NAME or NAMESPACE/NAME@VERSION".into())
        }
    };
    if let Some(w) = named.as_deref().or(workflow) {
        if !crate::workflow::well_formed_reference(w) {
            return Err(format!(
                "`{}` is not NAMESPACE/NAME or NAMESPACE/NAME@MAJOR.MINOR.PATCH",
                crate::model::clip(w, 80)
            ));
        }
    }
    match (named, workflow) {
        (Some(w), _) => {
            let context = map
                .remove("context")
                .unwrap_or_else(|| Value::Object(Default::default()));
            if !context.is_object() {
                return Err("`context` must be a JSON object".into());
            }
            Ok(Some(NewTask { workflow: w, context }))
        }
        (None, Some(w)) => Ok(Some(NewTask {
            workflow: w.to_string(),
            context: Value::Object(map),
        })),
        (None, None) => Err("the line names no workflow (add \"workflow\": \"NS/NAME\") and none was given on the command line".into()),
    }
}

async fn submit_with(
    client: &dyn Client,
    workflow: &str,
    context: Value,
    wait: bool,
    json: bool,
) -> Result<i32> {
    let task = client
        .submit(NewTask {
            workflow: workflow.to_string(),
            context,
        })
        .await?;
    if !wait {
        if json {
            say!("{}", serde_json::to_string_pretty(&output::task_json(&task))?);
        } else {
            say!("{}", task.id);
        }
        return Ok(0);
    }
    if !json {
        say!("{}", task.id);
    }
    let mut progress = |e: &crate::model::Event| {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{}", super::one_line(&e.line()));
    };
    let done = client.wait_for(&task.id, &mut progress).await?;
    let waiting = done.execution_status() == crate::model::ExecutionStatus::AwaitingDecision;
    if json {
        say!("{}", serde_json::to_string_pretty(&output::task_json(&done))?);
    } else if waiting {
        say!("{} waits for approval (see `taskdeck approvals`)", done.id);
    } else {
        say!("{} {}", done.id, done.state);
    }
    Ok(if done.state == TaskState::Complete { 0 } else { 2 })
}

/// Journals a token's issuance (`token.issued`, SOC 2 CC6.1) under its fingerprint, when the
/// store is free; while a server holds it, the server journals the token's first use instead.
async fn journal_issue(
    cli: &Cli,
    data: &Path,
    issuer: &str,
    identity: &Identity,
    token: &str,
    ttl: std::time::Duration,
) {
    use sha2::{Digest, Sha256};
    // PostgreSQL's journal takes appends from any process (under its lock); sled's only when
    // no other process holds the directory.
    let mut dir_lock = None;
    let store: Box<dyn crate::store::Store> = match super::postgres_store(cli) {
        Ok(Some(url)) => match crate::store::PgTarget::parse(url) {
            // A store that does not exist is not made just to journal a token.
            Ok(target) if !crate::store::PgStore::exists(&target).await.unwrap_or(false) => return,
            Ok(target) => match crate::store::PgStore::open_target(
                &target,
                crate::store::Durability::Immediate,
                "token issue",
                false,
            )
            .await
            {
                // Nor one a copy is filling (its journal comes whole from the source).
                Ok(store) if store.copying().await.ok().flatten().is_some() => return,
                Ok(store) => Box::new(store),
                Err(e) => {
                    tracing::warn!("the token was issued but not journaled: {e}");
                    return;
                }
            },
            Err(_) => return,
        },
        Ok(None) => {
            // Only while no other process holds the directory (whatever its store): the
            // holder journals the token's first use instead.
            match crate::fsutil::lock_exclusive(&data.join("taskdeck.lock")) {
                Ok(Some(lock)) => dir_lock = Some(lock),
                _ => return,
            }
            match crate::store::SledStore::open(data, crate::store::Durability::Immediate, "token issue") {
                Ok(store) => Box::new(store),
                Err(_) => return,
            }
        }
        Err(_) => return,
    };
    let fingerprint = crate::audit::entry::hex(&Sha256::digest(token.as_bytes())[..8]);
    let mut record = crate::audit::AuditRecord::new(
        chrono::Utc::now().timestamp_millis(),
        issuer,
        "token.issued",
        format!("token/{fingerprint}"),
        format!(
            "for {}, valid {}s{}",
            identity.describe(),
            ttl.as_secs(),
            if identity.auth.is_some() { ", mfa" } else { "" }
        ),
    );
    record.compliance_tags = vec!["SOC2:CC6.1".into()];
    if let Err(e) = store.append_audit(vec![record]).await {
        tracing::warn!("the token was issued but not journaled: {e}");
    }
    drop(store);
    drop(dir_lock);
}

/// `taskdeck token rotate-key`: an admin's; journaled as `key.rotated` in the store, which it
/// opens here (so no server holds the old key in memory meanwhile).
async fn rotate_key(cli: &Cli, data: &Path) -> Result<i32> {
    let who = super::identity(cli, data)?;
    if who.role != crate::auth::Role::Admin {
        bail!(
            "{} may not rotate the signing key: it takes an admin",
            who.describe()
        );
    }
    let session = super::session::own_store(cli, data).await?;
    let result = async {
        let engine = session
            .engine
            .clone()
            .ok_or_else(|| anyhow!("rotating the key opens the store here"))?;
        let had_previous = crate::auth::token::previous_key(data)?.is_some();
        crate::auth::token::rotate_key(data)?;
        let mut record = crate::audit::AuditRecord::new(
            engine.clock().now(),
            &who.sub,
            "key.rotated",
            "key/auth/jwt.key".into(),
            format!(
                "new token signing key; tokens of the previous key stay valid until they expire{}",
                if had_previous { "; the key before it was dropped" } else { "" }
            ),
        );
        record.compliance_tags = vec!["SOC2:CC6.1".into()];
        engine.store().append_audit(vec![record]).await?;
        say!(
            "rotated the signing key ({}): new tokens are signed with the new key; tokens of the previous key stay valid until they expire",
            data.join("auth").join("jwt.key").display()
        );
        Ok(0)
    }
    .await;
    session.close(data, std::time::Duration::ZERO).await;
    result
}

fn token_show(cli: &Cli, data: &Path, token: Option<&str>) -> Result<i32> {
    let token = token
        .or(cli.token.as_deref())
        .ok_or_else(|| anyhow!("no token given: pass one, or set TASKDECK_TOKEN"))?;
    let who = super::verify_token(cli, data, token)?;
    let expires = who
        .expires_at
        .map(crate::model::format_timestamp)
        .unwrap_or_else(|| "never".into());
    say!("{}  expires {expires}", who.describe());
    Ok(0)
}

async fn approvals(cli: &Cli, data: &Path, json: bool) -> Result<i32> {
    let session = session(cli, data, false, false).await?;
    let result = async {
        let waiting = session.client.approvals().await?;
        let now = session.client.now();
        if json {
            let list: Vec<Value> = waiting
                .iter()
                .map(|a| serde_json::json!({ "task": a.task, "workflow": a.workflow, "step": a.step, "request": a.request, "requested_at": crate::model::format_timestamp(a.requested_at), "expires_at": crate::model::format_timestamp(a.expires_at) }))
                .collect();
            say!("{}", serde_json::to_string_pretty(&list)?);
        } else if waiting.is_empty() {
            say!("nothing waits for approval");
        } else {
            for a in &waiting {
                let r = &a.request;
                let amount = r.amount.map(crate::model::money).unwrap_or_default();
                say!(
                    "{}  {}  {}  {amount}  requested by {}  needs {}  expires in {}s  {}",
                    short_id(&a.task),
                    a.workflow,
                    super::one_line(&a.step),
                    super::one_line(&r.requester),
                    super::one_line(&r.required_role),
                    crate::model::millis_until(now, a.expires_at).div_ceil(1000),
                    super::one_line(&r.summary)
                );
            }
        }
        Ok(0)
    }
    .await;
    session.close(data, Duration::ZERO).await;
    result
}

/// What `taskdeck tasks` lists.
struct Listing {
    query: TaskQuery,
    since: Option<Duration>,
    /// `None`: every matching task.
    limit: Option<u64>,
    json: bool,
}

/// `taskdeck tasks`: newest first, page by page from the store's indexes, each page printed as
/// it arrives (a table's columns are sized per page); with a limit, the cursor to continue.
async fn tasks(cli: &Cli, data: &Path, listing: Listing) -> Result<i32> {
    let session = session(cli, data, false, false).await?;
    let result = async {
        let client = &session.client;
        let mut query = listing.query.clone();
        if let Some(age) = listing.since {
            let age = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            query.since = Some(client.now().saturating_sub(age).max(0));
        }
        let mut left = listing
            .limit
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let mut first = true;
        if listing.json {
            super::write_raw("[")?;
        }
        let more = loop {
            query.limit = Some(left.min(crate::engine::query::MAX_PAGE));
            let page = client.tasks(&query).await?;
            left = left.saturating_sub(page.tasks.len());
            if listing.json {
                for task in &page.tasks {
                    let text = serde_json::to_string_pretty(&output::task_json(task))?;
                    let sep = if first { "\n" } else { ",\n" };
                    super::write_raw(&format!("{sep}{}", indent(&text)))?;
                    first = false;
                }
            } else if !page.tasks.is_empty() || first {
                let table = output::tasks_table(&page.tasks, client.now());
                let table = if first {
                    table.as_str()
                } else {
                    table.split_once('\n').map_or("", |t| t.1)
                };
                if !table.trim().is_empty() {
                    say!("{}", table.trim_end());
                }
                first = false;
            }
            match page.next_cursor {
                Some(c) if left > 0 => query.cursor = Some(c),
                next => break next,
            }
        };
        if listing.json {
            super::write_raw(if first { "]\n" } else { "\n]\n" })?;
        }
        if let Some(cursor) = more {
            // On stderr, so stdout stays the listing (or valid JSON); the cursor ends the line.
            let shown = listing.limit.unwrap_or_default();
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "{shown} shown (--all for every one); the next page: --cursor {cursor}"
            );
        }
        Ok(0)
    }
    .await;
    session.close(data, Duration::ZERO).await;
    result
}

/// Pretty JSON indented one level, as an element of an array.
fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `taskdeck prune`: archives then removes finished tasks last changed before a moment.
async fn prune(cli: &Cli, data: &Path, before: super::Before, dry_run: bool) -> Result<i32> {
    let who = super::identity(cli, data)?;
    if who.role != crate::auth::Role::Admin {
        bail!("{} may not prune the store: it takes an admin", who.describe());
    }
    let session = super::session::own_store(cli, data).await?;
    let result = async {
        let engine = session
            .engine
            .clone()
            .ok_or_else(|| anyhow!("prune runs the engine here"))?;
        let now = engine.clock().now();
        let cutoff = match before {
            super::Before::At(at) => at,
            super::Before::Ago(age) => now.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)),
        };
        let age = u64::try_from(now.saturating_sub(cutoff)).unwrap_or(0);
        let policy = crate::engine::retention::Retention {
            max_age: Some(Duration::from_millis(age)),
            max_finished: None,
            archive_dir: cli.archive_dir.clone().unwrap_or_else(|| data.join("archive")),
            archive_cap: None,
        };
        let when = crate::model::format_timestamp(cutoff);
        let (report, ids) = engine.prune(policy.clone(), dry_run).await?;
        if dry_run {
            let mut tasks = Vec::new();
            for id in &ids {
                if let Some(t) = engine.store().task(id).await? {
                    tasks.push(t);
                }
            }
            say!("{} finished task(s) last changed before {when} would be archived to {} and removed:", tasks.len(), policy.archive_dir.display());
            if !tasks.is_empty() {
                say!("{}", output::tasks_table(&tasks, now).trim_end());
            }
        } else {
            match &report.archive {
                Some(file) => say!("archived {} finished task(s) last changed before {when} to {} and removed them from the store", report.removed, file.display()),
                None => say!("no finished task was last changed before {when}; nothing removed"),
            }
            if report.kept > 0 {
                say!("kept {} (active again, unreadable, or children of unfinished tasks)", report.kept);
            }
        }
        Ok(0)
    }
    .await;
    session.close(data, Duration::ZERO).await;
    result
}

async fn show(cli: &Cli, data: &Path, text: &str, json: bool) -> Result<i32> {
    let session = session(cli, data, false, false).await?;
    let result = async {
        let detail = session.client.task(text).await?;
        let (task, transitions) = (&detail.task, &detail.transitions);
        if json {
            let mut v = output::task_json(task);
            v["transitions"] = transitions.iter().map(output::transition_json).collect();
            say!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            say!("{}", output::task_detail(task, transitions).trim_end());
        }
        Ok(0)
    }
    .await;
    session.close(data, Duration::ZERO).await;
    result
}

/// An operator command run against the store without executing steps.
enum Admin<'a> {
    Decide {
        task: &'a str,
        step: &'a str,
        approve: bool,
        note: Option<String>,
    },
    Retry {
        task: &'a str,
        reason: &'a str,
    },
    RetryNow {
        task: &'a str,
        step: &'a str,
        reason: &'a str,
    },
    Cancel {
        task: &'a str,
        reason: &'a str,
    },
    Resolve {
        task: &'a str,
        step: &'a str,
        results: Value,
        reason: &'a str,
    },
}

async fn admin(cli: &Cli, data: &Path, action: Admin<'_>) -> Result<i32> {
    let session = session(cli, data, false, false).await?;
    let client = &session.client;
    let result = match action {
        Admin::Retry { task, reason } => client.retry(task, reason).await,
        Admin::RetryNow { task, step, reason } => client.retry_now(task, step, reason).await,
        Admin::Cancel { task, reason } => client.cancel(task, reason).await,
        Admin::Resolve {
            task,
            step,
            results,
            reason,
        } => client.resolve(task, step, results, reason).await,
        Admin::Decide {
            task,
            step,
            approve,
            note,
        } => client.decide(task, step, approve, note).await,
    };
    session.close(data, Duration::ZERO).await;
    let task = result?;
    say!("{} {}", task.id, task.state);
    Ok(0)
}

/// The task context from `--context` or `--context-file`, at most `limit` bytes.
fn read_context(inline: Option<&str>, file: Option<&PathBuf>, limit: usize) -> Result<Value> {
    let too_big = |what: &str| {
        anyhow!("{what} is larger than the {limit}-byte limit on task contexts (--max-context-bytes)")
    };
    match (inline, file) {
        (Some(text), _) => {
            if text.len() > limit {
                return Err(too_big("--context"));
            }
            serde_json::from_str(text).map_err(|e| anyhow!("--context is not valid JSON: {e}"))
        }
        (None, Some(path)) => {
            // A regular file (a FIFO would hang), read up to the limit and no further.
            let bytes = match crate::fsutil::read_named(path, u64::try_from(limit).unwrap_or(u64::MAX)) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    return Err(too_big(&path.display().to_string()))
                }
                Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
            };
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow!("cannot read {} (expected UTF-8 JSON)", path.display()))?;
            // A byte-order mark is not JSON, but editors write one.
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            serde_json::from_str(text).map_err(|e| anyhow!("{}: not valid JSON: {e}", path.display()))
        }
        (None, None) => Ok(Value::Object(Default::default())),
    }
}

fn validate(cli: &Cli, paths: &[PathBuf]) -> Result<i32> {
    let registry = registry();
    let sources: Vec<Source> = if paths.is_empty() {
        super::catalog_sources(cli)
    } else {
        paths.iter().cloned().map(Source::Path).collect()
    };
    match Catalog::load(&sources, &|h| registry.contains(h)) {
        Ok(catalog) => {
            say!("{} workflow(s) valid", catalog.len());
            Ok(0)
        }
        Err(errors) => {
            for e in errors {
                say!("{e}");
            }
            Ok(1)
        }
    }
}

async fn run(cli: &Cli, data: &Path, until_idle: bool, metrics_listen: Option<&str>) -> Result<i32> {
    let session = own(cli, data, !cli.no_api, false).await?;
    if let Some(server) = &session.server {
        tracing::info!("the API is at {}", server.url);
    }
    let engine = session.engine.clone().context("run owns its engine")?;
    let metrics = match metrics_listen {
        Some(addr) => match super::session::Server::metrics(cli, data, engine.clone(), addr).await {
            Ok(server) => {
                let _ = std::io::Write::write_fmt(
                    &mut std::io::stderr(),
                    format_args!("serving /metrics at {}/metrics\n", server.url),
                );
                Some(server)
            }
            Err(e) => {
                session.close(data, Duration::ZERO).await;
                return Err(e);
            }
        },
        None => None,
    };
    let printer = print_events(&*session.client).await?;
    if until_idle {
        tokio::select! {
            r = engine.when_idle() => r?,
            _ = shutdown_signal() => {}
        }
    } else {
        shutdown_signal().await;
    }
    let who = session.client.identity().clone();
    if let Some(metrics) = metrics {
        metrics.stop(data).await;
    }
    session.close(data, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    printer.abort();
    summary(engine.query(), &who).await
}

/// Prints every event the client may read, one line each, until aborted. A closed output
/// (a pipe whose reader left) stops the printing, not the engine.
async fn print_events(client: &dyn Client) -> Result<tokio::task::JoinHandle<()>> {
    use futures::StreamExt;
    let mut feed = client.events(None).await?;
    Ok(tokio::spawn(async move {
        while let Some(item) = feed.next().await {
            let line = match item {
                Ok(e) => super::one_line(&e.line()),
                Err(p) => format!("events stopped: {p}"),
            };
            if super::write_line(format_args!("{line}")).is_err() {
                break;
            }
        }
    }))
}

/// `run`'s closing line: the tasks `who` may read, by state, counted (never loaded).
async fn summary(query: &crate::engine::Query, who: &Identity) -> Result<i32> {
    let count = async |state| query.count(who, state).await;
    let complete = count(TaskState::Complete).await?;
    let error = count(TaskState::Error).await?;
    let cancelled = count(TaskState::Cancelled).await?;
    let unfinished = count(TaskState::Pending).await? + count(TaskState::InProgress).await?;
    say!("tasks: {complete} complete, {error} error, {cancelled} cancelled, {unfinished} unfinished");
    Ok(0)
}

/// `taskdeck serve`: the engine and the API, no terminal UI, until SIGTERM or Ctrl-C; then
/// the API stops taking requests, running steps get 10 s, and the engine stops.
async fn serve(cli: &Cli, data: &Path) -> Result<i32> {
    if cli.no_api {
        bail!("`serve` is the API; --no-api contradicts it (use `taskdeck run`)");
    }
    let session = own(cli, data, true, true).await?;
    let url = match &session.server {
        Some(s) => match s.listening.filter(|a| a.ip().is_unspecified()) {
            Some(wildcard) => format!("{} (listening on {wildcard})", s.url),
            None => s.url.clone(),
        },
        None => String::new(),
    };
    // Output is a courtesy: a closed stdout (a pipe whose reader left) must not stop the
    // server, nor skip its clean stop.
    let _ = super::write_line(format_args!(
        "taskdeck serve: the engine over {} is at {url} (Ctrl-C or SIGTERM stops it)",
        data.display()
    ));
    // An engine that stops by itself (its store failed, or, sharing a PostgreSQL store, its
    // leases were taken over) takes the process with it: a supervisor restarts it.
    let engine = session.engine.clone();
    let engine_stopped = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if engine.as_ref().is_some_and(|e| !e.is_running()) {
                return;
            }
        }
    };
    let failed = tokio::select! {
        _ = shutdown_signal() => false,
        _ = engine_stopped => true,
    };
    session.close(data, Duration::from_secs(10)).await;
    if failed {
        bail!(
            "the engine stopped by itself (see {}); restart taskdeck serve",
            data.join("logs").join("taskdeck.log").display()
        );
    }
    let _ = super::write_line(format_args!("stopped"));
    Ok(0)
}

/// `taskdeck demo`: submits traffic at `rate` and prints a summary line every second; after
/// the duration (or Ctrl-C) it stops submitting and waits up to a minute for tasks in flight
/// (a second Ctrl-C stops at once).
async fn demo_traffic(
    cli: &Cli,
    data: &Path,
    rate: f64,
    faults: crate::demo::FaultLevel,
    seed: u64,
    duration: Option<Duration>,
) -> Result<i32> {
    use crate::demo::{submit_next, Summary, Traffic};
    use futures::StreamExt;
    if !(crate::demo::MIN_RATE..=crate::demo::MAX_RATE).contains(&rate) {
        bail!(
            "--rate must be between {} and {} tasks per second, got {rate:?}",
            crate::demo::MIN_RATE,
            crate::demo::MAX_RATE
        );
    }
    let session = session(cli, data, true, !cli.no_api).await?;
    if let Err(e) = require_admin_for_demo(session.client.identity()) {
        session.close(data, Duration::ZERO).await;
        return Err(e);
    }
    // In-process, traffic is submitted as `demo`; remotely, as whom the token names.
    let client: Arc<dyn Client> = match &session.engine {
        Some(engine) => Arc::new(crate::client::Local::new(engine.clone(), crate::demo::identity())),
        None => session.client.clone(),
    };
    let mut events = session.client.events(None).await?;
    let mut traffic = Traffic::new(seed, faults);
    let mut summary = Summary::default();
    let started = tokio::time::Instant::now();
    // Within the checked range: every 0.1 ms to every 100 s.
    let mut submit = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut report = tokio::time::interval(Duration::from_secs(1));
    report.tick().await;
    let stop_at = duration.and_then(|d| started.checked_add(d));
    let until = match duration {
        Some(d) => format!("for {d:.0?}"),
        None => "until Ctrl-C".into(),
    };
    let level = format!("{faults:?}").to_lowercase();
    say!(
        "taskdeck demo: {rate} tasks/s, {level} faults, seed {seed}, {until} (data in {})",
        data.display()
    );
    let line = |s: &Summary| {
        format!(
            "[{:>5.1}s] submitted {:>5}  complete {:>5}  error {:>4}  in flight {:>4}  retries {:>5}  permanent errors {:>4}",
            started.elapsed().as_secs_f64(),
            s.submitted,
            s.complete,
            s.failed,
            s.in_flight(),
            s.retries,
            s.permanent_errors
        )
    };
    let ctrl_c = shutdown_signal();
    tokio::pin!(ctrl_c);
    let outcome: Result<()> = async {
        loop {
            tokio::select! {
                at = submit.tick() => {
                    // The tick due at the very end is not part of the run (rate × duration).
                    if stop_at.is_some_and(|stop| at >= stop) {
                        break;
                    }
                    submit_next(&*client, &mut traffic, &mut summary).await?
                }
                _ = report.tick() => say!("{}", line(&summary)),
                event = events.next() => match event {
                    Some(Ok(e)) => summary.observe(&e),
                    Some(Err(p)) => return Err(p.into()),
                    None => break,
                },
                _ = sleep_until(stop_at) => break,
                _ = &mut ctrl_c => break,
            }
        }
        say!(
            "stopped submitting; waiting up to 60 s for {} tasks in flight",
            summary.in_flight()
        );
        // In-process the engine says when it is idle; remotely, the events do.
        let engine = session.engine.clone();
        let idle = async move {
            match engine {
                Some(engine) => {
                    let _ = engine.when_idle().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::pin!(idle);
        let grace = tokio::time::sleep(Duration::from_secs(60));
        tokio::pin!(grace);
        let second_ctrl_c = shutdown_signal();
        tokio::pin!(second_ctrl_c);
        loop {
            tokio::select! {
                _ = &mut idle => break,
                _ = &mut grace => break,
                _ = &mut second_ctrl_c => break,
                _ = report.tick() => say!("{}", line(&summary)),
                event = events.next() => match event {
                    Some(Ok(e)) => {
                        summary.observe(&e);
                        if session.engine.is_none() && summary.in_flight() == 0 {
                            break;
                        }
                    }
                    _ => break,
                },
            }
        }
        Ok(())
    }
    .await;
    while let Some(Some(Ok(e))) = futures::FutureExt::now_or_never(events.next()) {
        summary.observe(&e);
    }
    // In-process, this process's retention archived what the demo no longer keeps (through a
    // server, the server's own policy applies).
    let archive = session
        .engine
        .as_ref()
        .and(super::retention(cli, data))
        .map(|policy| policy.archive_dir);
    // However the loop ended (a closed pipe included), the engine stops cleanly.
    session.close(data, Duration::from_secs(5)).await;
    outcome?;
    say!("{}", line(&summary));
    say!("inspect with: taskdeck tasks --state error   |   taskdeck show ID");
    if let Some(archive) = archive {
        say!(
            "(the demo keeps the last 10 minutes or 2,000 finished tasks; older ones are archived in {})",
            archive.display()
        );
    }
    Ok(0)
}

/// Demo traffic submits into every blog namespace as the `demo` admin: an admin's act.
fn require_admin_for_demo(who: &Identity) -> Result<()> {
    if who.role != crate::auth::Role::Admin {
        bail!(
            "{} may not run demo traffic: it submits into every namespace as an admin",
            who.describe()
        );
    }
    Ok(())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// SIGINT or SIGTERM.
pub(super) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// `taskdeck` with no command: the console, with the engine embedded.
async fn console(cli: &Cli, data: &Path) -> Result<i32> {
    use std::io::IsTerminal;
    let mut theme = crate::console::theme::Theme::load(&cli.theme)?;
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        theme = theme.without_colour();
    }
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("the console needs a terminal; for headless use try `taskdeck run`, `taskdeck submit --wait` or `taskdeck demo` (see --help)");
    }
    let session = session(cli, data, true, !cli.no_api).await?;
    let client = session.client.clone();
    if cli.demo {
        if let Err(e) = require_admin_for_demo(client.identity()) {
            session.close(data, Duration::ZERO).await;
            return Err(e);
        }
    }
    let who = client.identity();
    let endpoint = match (&session.server, client.endpoint()) {
        (Some(server), _) => format!("api {}", server.url.trim_start_matches("http://")),
        (None, crate::client::Endpoint::Remote(url)) => format!("→ {url}"),
        (None, crate::client::Endpoint::InProcess) => "no api".into(),
    };
    // In-process, demo traffic is submitted as `demo`; remotely, as whom the token names.
    let demo: Option<Arc<dyn Client>> = match (cli.demo, &session.engine) {
        (false, _) => None,
        (true, Some(engine)) => Some(Arc::new(crate::client::Local::new(
            engine.clone(),
            crate::demo::identity(),
        ))),
        (true, None) => Some(client.clone()),
    };
    let options = crate::console::Options {
        theme,
        demo,
        record: cli.record.clone(),
        info: crate::console::app::HeaderInfo {
            data_dir: tilde(data),
            durability: match &session.engine {
                Some(_) => cli.durability.as_str().to_string(),
                None => "remote".into(),
            },
            operator: if cli.token.is_some() || session.engine.is_none() {
                who.describe()
            } else {
                format!("{} (admin, no token)", who.sub)
            },
            endpoint,
            read_only_flag: cli.read_only,
        },
    };
    let result = crate::console::run(client, options).await;
    session.close(data, Duration::from_secs(5)).await;
    result.context("console")?;
    if let Some(path) = &cli.record {
        say!(
            "recorded the session to {} (play it with `asciinema play {}`)",
            path.display(),
            path.display()
        );
    }
    Ok(0)
}

/// The path with the home directory shortened to `~`.
fn tilde(path: &Path) -> String {
    match dirs::home_dir().and_then(|home| path.strip_prefix(home).ok().map(|p| p.to_path_buf())) {
        Some(rest) => format!("~/{}", rest.display()),
        None => path.display().to_string(),
    }
}
