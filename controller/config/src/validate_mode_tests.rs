//! The group modes' rules (`mode`, `max_in_flight`, `stack_size`,
//! `task_timeout`): each bad value is refused with an error that names the
//! file and the key.

use super::*;

#[test]
fn microthread_mode_is_opt_in_with_checked_bounds() {
    let config = check(BASE).unwrap();
    assert!(config.groups.iter().all(|g| g.microthreads.is_none()));
    let on = "workers = 1\nmode = \"microthread\"";
    let config = check(&BASE.replacen("workers = 1", on, 1)).unwrap();
    assert_eq!(
        config.groups[1].microthreads,
        Some(MicroThreads {
            max_in_flight: defaults::MAX_IN_FLIGHT,
            stack_size: defaults::STACK_SIZE,
        })
    );
    let set = "workers = 1\nmode = \"microthread\"\nmax_in_flight = 50\nstack_size = \"128KiB\"";
    let config = check(&BASE.replacen("workers = 1", set, 1)).unwrap();
    assert_eq!(
        config.groups[1].microthreads,
        Some(MicroThreads {
            max_in_flight: 50,
            stack_size: 128 << 10,
        })
    );
    let key = "group[1].mode";
    refused(
        "workers = 1",
        "workers = 1\nmode = \"coroutine\"",
        key,
        "microthread",
    );
    let key = "group[1].max_in_flight";
    refused(
        "workers = 1",
        &format!("{on}\nmax_in_flight = 0"),
        key,
        "out of range",
    );
    refused(
        "workers = 1",
        "workers = 1\nmax_in_flight = 5",
        key,
        "only for mode",
    );
    let key = "group[1].stack_size";
    refused(
        "workers = 1",
        &format!("{on}\nstack_size = \"65000B\""),
        key,
        "multiple",
    );
    refused(
        "workers = 1",
        &format!("{on}\nstack_size = \"4KiB\""),
        key,
        "from",
    );
    refused(
        "workers = 1",
        &format!("{on}\nstack_size = \"1GiB\""),
        key,
        "from",
    );
    refused(
        "workers = 1",
        "workers = 1\nstack_size = \"64KiB\"",
        key,
        "only for mode",
    );
}

#[test]
fn async_mode_has_max_in_flight_and_a_bounded_task_timeout() {
    let config = check(BASE).unwrap();
    assert!(config.groups.iter().all(|g| g.async_tasks.is_none()));
    let on = "workers = 1\nmode = \"async\"";
    let config = check(&BASE.replacen("workers = 1", on, 1)).unwrap();
    assert_eq!(config.groups[1].microthreads, None);
    assert_eq!(
        config.groups[1].async_tasks,
        Some(AsyncTasks {
            max_in_flight: defaults::MAX_IN_FLIGHT,
            task_timeout: defaults::TASK_TIMEOUT,
        })
    );
    let set = format!("{on}\nmax_in_flight = 64\ntask_timeout = \"250ms\"");
    let config = check(&BASE.replacen("workers = 1", &set, 1)).unwrap();
    assert_eq!(
        config.groups[1].async_tasks,
        Some(AsyncTasks {
            max_in_flight: 64,
            task_timeout: Duration::from_millis(250),
        })
    );
    let key = "group[1].task_timeout";
    for (bad, words) in [
        ("\"0s\"", "out of range"),
        ("\"1ms\"", "out of range"),
        ("\"2h\"", "out of range"),
        ("\"soon\"", "not a duration"),
    ] {
        refused(
            "workers = 1",
            &format!("{on}\ntask_timeout = {bad}"),
            key,
            words,
        );
    }
    refused(
        "workers = 1",
        "workers = 1\ntask_timeout = \"1s\"",
        key,
        "only for mode = \"async\"",
    );
    refused(
        "workers = 1",
        "workers = 1\nmode = \"microthread\"\ntask_timeout = \"1s\"",
        key,
        "only for mode = \"async\"",
    );
    refused(
        "workers = 1",
        &format!("{on}\nmax_in_flight = 0"),
        "group[1].max_in_flight",
        "out of range",
    );
    refused(
        "workers = 1",
        &format!("{on}\nstack_size = \"64KiB\""),
        "group[1].stack_size",
        "only for mode = \"microthread\"",
    );
}
