//! The README's first command works: `demo --duration N` (`cargo run --release -p demo`) runs the whole system on an
//! embedded database, shows every scripted case, and stops by itself with exit code 0.

use std::process::Command;

#[test]
fn demo_runs_and_stops_by_itself() {
    let output = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--duration", "3", "--riders", "4"])
        .output()
        .expect("running the demo binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "DECLINE replay",
        "DECLINE pass_back",
        "DECLINE bad_device_signature",
        "DECLINE code_expired",
        "DECLINE rider_denied",
        "re-upload identical: true",
        "arrears repaid; the deny-listing lifts by itself",
        "paid by payment code",
        "decline (payment_declined)",
        "same answer, charged once (true)",
        "— ticket TK-",
        "0 unbalanced",
        "exceptions 0, journal balanced (true)",
        "Summary",
        "demo finished cleanly",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in demo output:\n{stdout}"
        );
    }
}
