//! Given/when/then tests of the workspace registry entry. Every time is a
//! fixed instant; nothing reads a clock.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use uuid::Uuid;

use super::*;

type WorkspaceTest = TestFramework<Workspace>;

const WORKSPACE: Uuid = Uuid::from_u128(0x51);
const URL: &str = "https://agent.example.com/a2a";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(seconds)
}

fn register(
    name: Option<&str>,
    url: Option<&str>,
    delivery_mode: DeliveryMode,
) -> WorkspaceCommand {
    WorkspaceCommand::Register {
        workspace_id: WORKSPACE,
        name: name.map(str::to_string),
        url: url.map(str::to_string),
        delivery_mode,
        token_hash: "hash-1".to_string(),
        at: t0(),
    }
}

fn registered(
    name: Option<&str>,
    url: Option<&str>,
    delivery_mode: DeliveryMode,
) -> WorkspaceEvent {
    WorkspaceEvent::WorkspaceRegistered {
        workspace_id: WORKSPACE,
        name: name.map(str::to_string),
        url: url.map(str::to_string),
        delivery_mode,
        token_hash: "hash-1".to_string(),
        at: t0(),
    }
}

fn push_workspace() -> Vec<WorkspaceEvent> {
    vec![registered(Some("alpha"), Some(URL), DeliveryMode::Push)]
}

fn update(name: Option<&str>, url: Option<&str>, delivery_mode: DeliveryMode) -> WorkspaceCommand {
    WorkspaceCommand::UpdateRegistration {
        name: name.map(str::to_string),
        url: url.map(str::to_string),
        delivery_mode,
        at: at(10),
    }
}

fn updated(name: Option<&str>, url: Option<&str>, delivery_mode: DeliveryMode) -> WorkspaceEvent {
    WorkspaceEvent::WorkspaceRegistrationUpdated {
        workspace_id: WORKSPACE,
        name: name.map(str::to_string),
        url: url.map(str::to_string),
        delivery_mode,
        at: at(10),
    }
}

fn report(active_tasks: u32, max_concurrent: u32, seconds: i64) -> WorkspaceCommand {
    WorkspaceCommand::ReportCapacity {
        active_tasks,
        max_concurrent,
        at: at(seconds),
    }
}

fn reported(active_tasks: u32, max_concurrent: u32, seconds: i64) -> WorkspaceEvent {
    WorkspaceEvent::WorkspaceCapacityReported {
        workspace_id: WORKSPACE,
        active_tasks,
        max_concurrent,
        at: at(seconds),
    }
}

fn fold(events: Vec<WorkspaceEvent>) -> Workspace {
    let mut workspace = Workspace::default();
    for event in events {
        workspace.apply(event);
    }
    workspace
}

/// The `InvalidUrl` reason of `url`, or a panic if it is accepted.
fn url_rejection(url: &str, delivery_mode: DeliveryMode) -> String {
    match WorkspaceTest::with(())
        .given_no_previous_events()
        .when(register(None, Some(url), delivery_mode))
        .inspect_result()
    {
        Err(WorkspaceError::InvalidUrl(reason)) => reason,
        other => panic!("{url}: expected InvalidUrl, got {other:?}"),
    }
}

// ------------------------------------------------------------ Register

#[test]
fn registering_a_push_workspace_with_a_url() {
    WorkspaceTest::with(())
        .given_no_previous_events()
        .when(register(Some("alpha"), Some(URL), DeliveryMode::Push))
        .then_expect_events(push_workspace());
}

#[test]
fn registering_a_poll_workspace_needs_no_url() {
    WorkspaceTest::with(())
        .given_no_previous_events()
        .when(register(None, None, DeliveryMode::Poll))
        .then_expect_events(vec![registered(None, None, DeliveryMode::Poll)]);
}

#[test]
fn a_poll_workspace_may_still_give_a_url() {
    WorkspaceTest::with(())
        .given_no_previous_events()
        .when(register(
            None,
            Some("http://10.0.0.7:8080/"),
            DeliveryMode::Poll,
        ))
        .then_expect_events(vec![registered(
            None,
            Some("http://10.0.0.7:8080/"),
            DeliveryMode::Poll,
        )]);
}

#[test]
fn registering_twice_is_rejected() {
    WorkspaceTest::with(())
        .given(push_workspace())
        .when(register(Some("alpha"), Some(URL), DeliveryMode::Push))
        .then_expect_error(WorkspaceError::AlreadyRegistered);
}

#[test]
fn a_push_workspace_needs_a_url() {
    WorkspaceTest::with(())
        .given_no_previous_events()
        .when(register(Some("alpha"), None, DeliveryMode::Push))
        .then_expect_error(WorkspaceError::UrlRequiredForPush);
}

#[test]
fn a_url_that_does_not_parse_is_rejected() {
    for url in ["", "not a url", "agent.example.com/a2a", "http://"] {
        for mode in [DeliveryMode::Push, DeliveryMode::Poll] {
            assert!(!url_rejection(url, mode).is_empty());
        }
    }
}

#[test]
fn a_url_that_is_not_http_is_rejected() {
    for url in [
        "ftp://agent.example.com/",
        "file:///tmp/agent",
        "mailto:agent@example.com",
    ] {
        for mode in [DeliveryMode::Push, DeliveryMode::Poll] {
            assert!(url_rejection(url, mode).contains("http or https"), "{url}");
        }
    }
}

#[test]
fn a_name_over_200_characters_is_rejected() {
    let name = "n".repeat(MAX_NAME_CHARS + 1);
    WorkspaceTest::with(())
        .given_no_previous_events()
        .when(register(Some(&name), Some(URL), DeliveryMode::Push))
        .then_expect_error(WorkspaceError::NameTooLong {
            max: MAX_NAME_CHARS,
        });
}

#[test]
fn the_name_limit_counts_characters_not_bytes() {
    // 200 characters, 600 bytes.
    let name = "名".repeat(MAX_NAME_CHARS);
    WorkspaceTest::with(())
        .given_no_previous_events()
        .when(register(Some(&name), Some(URL), DeliveryMode::Push))
        .then_expect_events(vec![registered(Some(&name), Some(URL), DeliveryMode::Push)]);
}

// -------------------------------------------------- UpdateRegistration

#[test]
fn updating_an_unregistered_workspace_is_rejected() {
    WorkspaceTest::with(())
        .given_no_previous_events()
        .when(update(Some("alpha"), Some(URL), DeliveryMode::Push))
        .then_expect_error(WorkspaceError::NotRegistered);
}

#[test]
fn updating_the_registration_records_the_new_values() {
    WorkspaceTest::with(())
        .given(push_workspace())
        .when(update(
            Some("beta"),
            Some("https://beta.example.com/"),
            DeliveryMode::Push,
        ))
        .then_expect_events(vec![updated(
            Some("beta"),
            Some("https://beta.example.com/"),
            DeliveryMode::Push,
        )]);
}

#[test]
fn switching_to_poll_may_drop_the_url() {
    WorkspaceTest::with(())
        .given(push_workspace())
        .when(update(Some("alpha"), None, DeliveryMode::Poll))
        .then_expect_events(vec![updated(Some("alpha"), None, DeliveryMode::Poll)]);
}

#[test]
fn an_update_that_changes_nothing_is_a_no_op() {
    WorkspaceTest::with(())
        .given(push_workspace())
        .when(update(Some("alpha"), Some(URL), DeliveryMode::Push))
        .then_expect_events(vec![]);
}

#[test]
fn an_update_is_validated_like_a_registration() {
    let name = "n".repeat(MAX_NAME_CHARS + 1);
    let cases = [
        (
            update(Some("alpha"), None, DeliveryMode::Push),
            WorkspaceError::UrlRequiredForPush,
        ),
        (
            update(Some(&name), Some(URL), DeliveryMode::Push),
            WorkspaceError::NameTooLong {
                max: MAX_NAME_CHARS,
            },
        ),
    ];
    for (command, error) in cases {
        WorkspaceTest::with(())
            .given(push_workspace())
            .when(command)
            .then_expect_error(error);
    }
    let result = WorkspaceTest::with(())
        .given(push_workspace())
        .when(update(
            Some("alpha"),
            Some("ws://agent.example.com"),
            DeliveryMode::Push,
        ))
        .inspect_result();
    assert!(
        matches!(result, Err(WorkspaceError::InvalidUrl(_))),
        "{result:?}"
    );
}

// ------------------------------------------------------ ReportCapacity

#[test]
fn reporting_capacity_of_an_unregistered_workspace_is_rejected() {
    WorkspaceTest::with(())
        .given_no_previous_events()
        .when(report(0, 4, 1))
        .then_expect_error(WorkspaceError::NotRegistered);
}

#[test]
fn a_capacity_of_zero_is_rejected() {
    WorkspaceTest::with(())
        .given(push_workspace())
        .when(report(0, 0, 1))
        .then_expect_error(WorkspaceError::InvalidCapacity);
}

#[test]
fn the_first_capacity_report_is_recorded() {
    WorkspaceTest::with(())
        .given(push_workspace())
        .when(report(0, 4, 1))
        .then_expect_events(vec![reported(0, 4, 1)]);
}

#[test]
fn an_unchanged_capacity_report_is_a_no_op() {
    let mut given = push_workspace();
    given.push(reported(2, 4, 1));
    WorkspaceTest::with(())
        .given(given)
        .when(report(2, 4, 30))
        .then_expect_events(vec![]);
}

#[test]
fn a_changed_capacity_report_is_recorded() {
    for (active_tasks, max_concurrent) in [(3, 4), (2, 8)] {
        let mut given = push_workspace();
        given.push(reported(2, 4, 1));
        WorkspaceTest::with(())
            .given(given)
            .when(report(active_tasks, max_concurrent, 30))
            .then_expect_events(vec![reported(active_tasks, max_concurrent, 30)]);
    }
}

// --------------------------------------------------------------- State

#[test]
fn the_state_folds_every_event() {
    let workspace = fold(vec![
        registered(Some("alpha"), Some(URL), DeliveryMode::Push),
        updated(Some("beta"), None, DeliveryMode::Poll),
        reported(1, 3, 20),
    ]);
    assert!(workspace.is_registered());
    assert_eq!(workspace.workspace_id(), Some(WORKSPACE));
    assert_eq!(workspace.name(), Some("beta"));
    assert_eq!(workspace.url(), None);
    assert_eq!(workspace.delivery_mode(), DeliveryMode::Poll);
    assert_eq!(workspace.token_hash(), Some("hash-1"));
    assert_eq!(workspace.active_tasks(), Some(1));
    assert_eq!(workspace.max_concurrent(), Some(3));
    assert_eq!(workspace.registered_at(), Some(t0()));
    assert_eq!(workspace.updated_at(), Some(at(20)));
}

#[test]
fn an_unregistered_workspace_has_nothing() {
    let workspace = Workspace::default();
    assert!(!workspace.is_registered());
    assert_eq!(workspace.workspace_id(), None);
    assert_eq!(workspace.token_hash(), None);
    assert_eq!(workspace.active_tasks(), None);
}

#[test]
fn the_state_survives_a_json_round_trip() {
    let workspace = fold(vec![
        registered(Some("alpha"), Some(URL), DeliveryMode::Push),
        reported(1, 3, 20),
    ]);
    let json = serde_json::to_string(&workspace).expect("serialize");
    let back: Workspace = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, workspace);
}

// --------------------------------------------------------- DeliveryMode

#[test]
fn delivery_modes_have_snake_case_names() {
    for (mode, name) in [(DeliveryMode::Push, "push"), (DeliveryMode::Poll, "poll")] {
        assert_eq!(mode.as_str(), name);
        assert_eq!(mode.to_string(), name);
        assert_eq!(name.parse::<DeliveryMode>(), Ok(mode));
        assert_eq!(
            serde_json::to_value(mode).expect("serialize"),
            serde_json::json!(name)
        );
    }
    assert_eq!(DeliveryMode::default(), DeliveryMode::Push);
}

#[test]
fn an_unknown_delivery_mode_does_not_parse() {
    for name in ["Push", "", "webhook"] {
        assert!(name.parse::<DeliveryMode>().is_err(), "{name}");
    }
}

// -------------------------------------------------------------- Tokens

fn rotated(hash: &str, seconds: i64) -> WorkspaceEvent {
    WorkspaceEvent::WorkspaceTokenRotated {
        workspace_id: WORKSPACE,
        token_hash: hash.to_string(),
        at: at(seconds),
    }
}

fn revoked(seconds: i64) -> WorkspaceEvent {
    WorkspaceEvent::WorkspaceTokenRevoked {
        workspace_id: WORKSPACE,
        at: at(seconds),
    }
}

#[test]
fn rotating_the_token_records_the_new_hash() {
    WorkspaceTest::with(())
        .given(push_workspace())
        .when(WorkspaceCommand::RotateToken {
            token_hash: "hash-2".to_string(),
            at: at(5),
        })
        .then_expect_events(vec![rotated("hash-2", 5)]);
    let workspace = fold(vec![push_workspace()[0].clone(), rotated("hash-2", 5)]);
    assert_eq!(workspace.token_hash(), Some("hash-2"));
}

#[test]
fn rotating_the_token_of_an_unregistered_workspace_is_rejected() {
    WorkspaceTest::with(())
        .given_no_previous_events()
        .when(WorkspaceCommand::RotateToken {
            token_hash: "hash-2".to_string(),
            at: at(5),
        })
        .then_expect_error(WorkspaceError::NotRegistered);
}

#[test]
fn revoking_the_token_leaves_the_workspace_without_one() {
    WorkspaceTest::with(())
        .given(push_workspace())
        .when(WorkspaceCommand::RevokeToken { at: at(5) })
        .then_expect_events(vec![revoked(5)]);
    let workspace = fold(vec![push_workspace()[0].clone(), revoked(5)]);
    assert!(workspace.is_registered());
    assert_eq!(workspace.token_hash(), None);
}

#[test]
fn revoking_a_revoked_token_is_a_no_op() {
    WorkspaceTest::with(())
        .given(vec![push_workspace()[0].clone(), revoked(5)])
        .when(WorkspaceCommand::RevokeToken { at: at(6) })
        .then_expect_events(vec![]);
}

#[test]
fn a_rotation_after_a_revocation_issues_a_working_token_again() {
    let workspace = fold(vec![
        push_workspace()[0].clone(),
        revoked(5),
        rotated("hash-3", 6),
    ]);
    assert_eq!(workspace.token_hash(), Some("hash-3"));
}

#[test]
fn a_url_with_credentials_is_rejected() {
    for url in [
        "https://user:pw@agent.example/",
        "https://user@agent.example/",
    ] {
        WorkspaceTest::with(())
            .given_no_previous_events()
            .when(register(None, Some(url), DeliveryMode::Push))
            .then_expect_error(WorkspaceError::CredentialsInUrl);
    }
}

// --------------------------------------------------------------- Serde

#[test]
fn every_event_survives_a_json_round_trip() {
    let events = vec![
        registered(Some("alpha"), Some(URL), DeliveryMode::Push),
        registered(None, None, DeliveryMode::Poll),
        updated(Some("beta"), None, DeliveryMode::Poll),
        reported(1, 3, 20),
        rotated("hash-2", 30),
        revoked(40),
    ];
    for event in events {
        let json = serde_json::to_value(&event).expect("serialize");
        assert!(json.get(event.event_type()).is_some(), "{json}");
        let back: WorkspaceEvent = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, event);
        assert_eq!(event.event_version(), "1.0");
    }
}

#[test]
fn errors_read_as_sentences() {
    assert_eq!(
        WorkspaceError::NameTooLong {
            max: MAX_NAME_CHARS
        }
        .to_string(),
        "the name is longer than 200 characters"
    );
}
