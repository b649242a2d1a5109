//! The provision state machine (a subset of ironic.common.states), pure:
//! which verb a node in which state may take, what state and target it
//! enters at once, and what its worker then does. No I/O here; the workers
//! in `provision` carry the plans out.

/// Ironic's provision state strings.
pub const ENROLL: &str = "enroll";
pub const VERIFYING: &str = "verifying";
pub const MANAGEABLE: &str = "manageable";
pub const AVAILABLE: &str = "available";
pub const DEPLOYING: &str = "deploying";
pub const DEPLOYWAIT: &str = "wait call-back";
pub const ACTIVE: &str = "active";
pub const DEPLOYFAIL: &str = "deploy failed";
pub const DELETING: &str = "deleting";
pub const CLEANING: &str = "cleaning";
pub const CLEANWAIT: &str = "clean wait";
pub const CLEANFAIL: &str = "clean failed";
pub const ERROR: &str = "error";

/// States a node can only be in while a worker holds its lock. Finding a
/// node in one of them at start-up means the agent died mid-way.
pub const TRANSIENT: [&str; 4] = [VERIFYING, DEPLOYING, DELETING, CLEANING];

/// States waiting for the ramdisk's heartbeat, with no lock held.
pub const WAITING: [&str; 2] = [DEPLOYWAIT, CLEANWAIT];

/// States a node may be deleted in (Ironic's `DELETE_ALLOWED_STATES`, plus
/// `clean failed`); any state when in maintenance.
pub const DELETE_ALLOWED: [&str; 4] = [ENROLL, MANAGEABLE, AVAILABLE, CLEANFAIL];

/// The `target` of `PUT /v1/nodes/{id}/states/provision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Manage,
    Provide,
    /// Deploy (`active`).
    Deploy,
    Rebuild,
    /// Tear down (`deleted`).
    Delete,
    Abort,
}

impl Verb {
    pub fn parse(s: &str) -> Option<Verb> {
        Some(match s {
            "manage" => Verb::Manage,
            "provide" => Verb::Provide,
            "active" | "deploy" => Verb::Deploy,
            "rebuild" => Verb::Rebuild,
            "deleted" | "undeploy" => Verb::Delete,
            "abort" => Verb::Abort,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Verb::Manage => "manage",
            Verb::Provide => "provide",
            Verb::Deploy => "active",
            Verb::Rebuild => "rebuild",
            Verb::Delete => "deleted",
            Verb::Abort => "abort",
        }
    }

    /// The targets the API accepts, for error messages.
    pub const ALL: [&'static str; 6] =
        ["manage", "provide", "active", "rebuild", "deleted", "abort"];
}

/// What the worker does once the node has entered [`Plan::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Nothing: the new state is final (e.g. available → manageable).
    None,
    /// Check the BMC credentials, then `manageable` (or back to `enroll`).
    Verify,
    /// Validate, prepare boot, power on: then `wait call-back`.
    Deploy,
    /// Power off, drop the instance, then clean (or `available`).
    TearDown,
    /// Boot the ramdisk to clean (or `available` when cleaning is off).
    Clean,
    /// Stop waiting for the ramdisk.
    Abort,
}

/// What a verb does to a node in a given state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The state the node enters when the request is accepted.
    pub state: &'static str,
    pub target: Option<&'static str>,
    pub work: Work,
}

/// The plan for `verb` on a node in `state`, or why it is refused
/// (Ironic's `InvalidStateRequested`, HTTP 400).
pub fn plan(state: &str, verb: Verb) -> Result<Plan, String> {
    let p = |state, target, work| {
        Ok(Plan {
            state,
            target,
            work,
        })
    };
    match (verb, state) {
        (Verb::Manage, ENROLL) => p(VERIFYING, Some(MANAGEABLE), Work::Verify),
        (Verb::Manage, AVAILABLE | CLEANFAIL) => p(MANAGEABLE, None, Work::None),
        (Verb::Provide, MANAGEABLE) => p(CLEANING, Some(AVAILABLE), Work::Clean),
        (Verb::Deploy, AVAILABLE | DEPLOYFAIL) => p(DEPLOYING, Some(ACTIVE), Work::Deploy),
        (Verb::Rebuild, ACTIVE | DEPLOYFAIL | ERROR) => p(DEPLOYING, Some(ACTIVE), Work::Deploy),
        (Verb::Delete, ACTIVE | DEPLOYFAIL | ERROR | DEPLOYWAIT) => {
            p(DELETING, Some(AVAILABLE), Work::TearDown)
        }
        (Verb::Abort, DEPLOYWAIT) => p(DEPLOYFAIL, Some(ACTIVE), Work::Abort),
        (Verb::Abort, CLEANWAIT) => p(CLEANFAIL, None, Work::Abort),
        _ => Err(format!(
            "The requested action \"{}\" can not be performed on a node in state \"{state}\".",
            verb.name()
        )),
    }
}

/// What a heartbeat does in `state`: the state the node enters while its
/// worker finishes, or `None` when a heartbeat is not expected there.
pub fn on_heartbeat(state: &str) -> Option<(&'static str, Option<&'static str>)> {
    match state {
        DEPLOYWAIT => Some((DEPLOYING, Some(ACTIVE))),
        CLEANWAIT => Some((CLEANING, Some(AVAILABLE))),
        _ => None,
    }
}

/// Where a node found in a transient state at start-up goes, with the
/// target it keeps (Ironic's conductor takes such nodes over the same way).
pub fn after_crash(state: &str) -> Option<(&'static str, Option<&'static str>)> {
    match state {
        VERIFYING => Some((ENROLL, None)),
        DEPLOYING => Some((DEPLOYFAIL, Some(ACTIVE))),
        DELETING => Some((ERROR, None)),
        CLEANING => Some((CLEANFAIL, None)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_parse_as_the_api_spells_them() {
        for v in Verb::ALL {
            assert_eq!(Verb::parse(v).map(Verb::name), Some(v));
        }
        assert_eq!(Verb::parse("undeploy"), Some(Verb::Delete));
        assert_eq!(Verb::parse("inspect"), None);
        assert_eq!(Verb::parse(""), None);
    }

    #[test]
    fn the_lifecycle_goes_round() {
        // enroll → manageable → available → active → available.
        assert_eq!(plan(ENROLL, Verb::Manage).map(|p| p.state), Ok(VERIFYING));
        assert_eq!(
            plan(MANAGEABLE, Verb::Provide).map(|p| p.work),
            Ok(Work::Clean)
        );
        let d = plan(AVAILABLE, Verb::Deploy).unwrap();
        assert_eq!(
            (d.state, d.target, d.work),
            (DEPLOYING, Some(ACTIVE), Work::Deploy)
        );
        let t = plan(ACTIVE, Verb::Delete).unwrap();
        assert_eq!((t.state, t.target), (DELETING, Some(AVAILABLE)));
        assert_eq!(on_heartbeat(DEPLOYWAIT), Some((DEPLOYING, Some(ACTIVE))));
        assert_eq!(on_heartbeat(CLEANWAIT), Some((CLEANING, Some(AVAILABLE))));
    }

    #[test]
    fn wrong_states_are_refused_with_the_state_named() {
        let e = plan(ENROLL, Verb::Deploy).unwrap_err();
        assert!(e.contains("\"active\"") && e.contains("\"enroll\""), "{e}");
        assert!(plan(ACTIVE, Verb::Deploy).is_err());
        assert!(plan(AVAILABLE, Verb::Delete).is_err());
        assert!(plan(AVAILABLE, Verb::Abort).is_err());
        assert!(plan(MANAGEABLE, Verb::Manage).is_err());
        assert!(plan(DEPLOYING, Verb::Rebuild).is_err());
        assert!(plan(CLEANWAIT, Verb::Delete).is_err());
    }

    #[test]
    fn rebuild_and_teardown_cover_novas_unprovision_states() {
        for s in [ACTIVE, DEPLOYFAIL, ERROR] {
            assert_eq!(plan(s, Verb::Rebuild).map(|p| p.work), Ok(Work::Deploy));
        }
        // nova.virt.ironic's _UNPROVISION_STATES, except `deploying`, which
        // only a crashed worker leaves unlocked (it becomes `deploy failed`).
        for s in [ACTIVE, DEPLOYFAIL, ERROR, DEPLOYWAIT] {
            assert_eq!(plan(s, Verb::Delete).map(|p| p.work), Ok(Work::TearDown));
        }
        assert_eq!(after_crash(DEPLOYING), Some((DEPLOYFAIL, Some(ACTIVE))));
    }

    #[test]
    fn heartbeats_outside_the_wait_states_are_not_expected() {
        for s in [
            ENROLL, AVAILABLE, ACTIVE, DEPLOYING, CLEANING, DEPLOYFAIL, CLEANFAIL,
        ] {
            assert_eq!(on_heartbeat(s), None, "{s}");
        }
    }

    #[test]
    fn crashes_leave_no_transient_state_behind() {
        for s in TRANSIENT {
            let (to, _) = after_crash(s).unwrap();
            assert!(!TRANSIENT.contains(&to), "{s} -> {to}");
        }
        for s in WAITING {
            assert_eq!(after_crash(s), None, "timers resume for {s}");
        }
    }

    #[test]
    fn aborts_fail_the_wait() {
        assert_eq!(
            plan(DEPLOYWAIT, Verb::Abort).map(|p| p.state),
            Ok(DEPLOYFAIL)
        );
        assert_eq!(plan(CLEANWAIT, Verb::Abort).map(|p| p.state), Ok(CLEANFAIL));
    }
}
