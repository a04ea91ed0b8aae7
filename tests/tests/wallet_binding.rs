//! Wallet binding the provider's way (issue 14, item 1): a rider can only ever bind the
//! agreement the provider confirms for a signing the gateway started for that rider, never one
//! the rider names; one agreement belongs to at most one rider; unbinding ends the agreement at
//! the provider; the provider's sign and unsign notifications are verified before anything is
//! written. Against the real provider sandbox over HTTP, on both databases.

use gateway::store::charging::ChargeStatus;
use serde_json::{json, Value};
use turnpike_tests::on_both;
use turnpike_tests::provider::{form_body, PaidEnv};
use turnpike_tests::{gate, tap, Db};
use turnpike_wire::api::{Decision, Direction};

/// Rides `from` → `to` on the gates' sequence `seq`; the exit's fare in fen.
async fn ride(
    p: &PaidEnv,
    rider: &turnpike_client::RiderDevice,
    (from, to): (&str, &str),
    seq: u64,
) -> i64 {
    let now = turnpike_tests::now_ms;
    let entry = p
        .env
        .gw
        .terminal(&gate(from, 1))
        .tap(&tap(seq, Direction::Entry, rider.ride_code(now()).unwrap()))
        .await
        .unwrap();
    assert_eq!(entry.decision, Decision::Approve, "{entry:?}");
    let exit = p
        .env
        .gw
        .terminal(&gate(to, 1))
        .tap(&tap(seq, Direction::Exit, rider.ride_code(now()).unwrap()))
        .await
        .unwrap();
    assert_eq!(exit.decision, Decision::Approve, "{exit:?}");
    exit.charge.unwrap().to_minor()
}

/// The agreement bound to `rider`, as the gateway's store has it.
async fn agreement_of(p: &PaidEnv, rider: &turnpike_client::RiderDevice) -> Option<String> {
    let rider_id = rider.rider_id.parse().unwrap();
    p.env.gw.state.store.wallet(rider_id).await.unwrap()
}

async fn send(
    p: &PaidEnv,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> turnpike_client::Answer {
    p.env
        .gw
        .public_send(method, path, Some(token), body)
        .await
        .unwrap()
}

/// Proves rider A cannot have A's journeys deducted from rider B's wallet: no request names an
/// agreement any more (the old `PUT` is gone, a signing takes no fields), A's own signing is
/// not bound by B's agreement, and after both ride, B's wallet paid exactly B's fare.
async fn a_rider_cannot_bind_another_riders_wallet(db: Db) {
    let Some(p) = PaidEnv::start(db, |_| {}).await else {
        return;
    };
    let (a, b) = (p.env.gw.rider().await, p.env.gw.rider().await);
    let b_user = p.bind_wallet(&b, 10_000, 10_000).await;
    let b_agreement = agreement_of(&p, &b).await;
    let b_agreement = b_agreement.expect("B is bound");
    let wallets_before = p.env.gw.count("rider_wallets").await;

    // The 600cd9c attack: A names B's agreement.
    let put = send(
        &p,
        reqwest::Method::PUT,
        "/v1/riders/me/wallet",
        &a.token,
        Some(&json!({ "agreement_no": b_agreement })),
    )
    .await;
    assert_eq!(
        (put.status, put.error_code().as_deref()),
        (405, Some("method_not_allowed"))
    );
    let named = send(
        &p,
        reqwest::Method::POST,
        "/v1/riders/me/wallet/signing",
        &a.token,
        Some(&json!({ "agreement_no": b_agreement })),
    )
    .await;
    assert_eq!(
        (named.status, named.error_code().as_deref()),
        (400, Some("unknown_field"))
    );
    assert_eq!(p.env.gw.count("wallet_signings").await, 1, "only B's");
    // A starts a signing of A's own but signs nothing: the provider has no agreement for
    // A's number, so looking at the wallet binds nothing (B's agreement is not A's).
    let (base, ca) = (&p.env.gw.public_base, p.env.gw.ca());
    let signing = a.start_wallet_signing(base, &ca).await.unwrap();
    assert!(signing.sign_url.contains("alipay.user.agreement.page.sign"));
    assert_eq!(a.wallet(base, &ca).await.unwrap().status, "signing");
    assert_eq!(p.env.gw.count("rider_wallets").await, wallets_before);

    let b_fare = ride(&p, &b, ("xianghu", "wulin-square"), 1).await;
    ride(&p, &a, ("xixing", "wulin-square"), 2).await;
    let a_id: i64 = a.rider_id.parse().unwrap();
    assert!(
        p.eventually(10_000, || async {
            let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
            charges.len() == 2
                && charges.iter().any(|c| c.status == ChargeStatus::Captured)
                && charges
                    .iter()
                    .any(|c| c.rider_id == Some(a_id) && c.attempt >= 2)
        })
        .await,
        "B's charge captured and A's declined at least once (no agreement)"
    );
    assert_eq!(p.sandbox.balance_fen(&b_user).await, 10_000 - b_fare);
    let a_charge = p
        .env
        .gw
        .state
        .store
        .charges(Some(a_id), None, 10)
        .await
        .unwrap();
    assert_ne!(
        a_charge[0].status,
        ChargeStatus::Captured,
        "{:?}",
        a_charge[0]
    );
}
on_both!(a_rider_cannot_bind_another_riders_wallet);

/// Proves one agreement belongs to at most one rider: the store refuses to bind an agreement
/// already bound to another rider (a constraint, whatever a bug upstream tries), and the
/// provider refuses a second buyer signing a link another buyer signed.
async fn one_agreement_one_rider(db: Db) {
    let Some(p) = PaidEnv::start(db, |_| {}).await else {
        return;
    };
    let store = &p.env.gw.state.store;
    let (a, b) = (p.env.gw.rider().await, p.env.gw.rider().await);
    let now = turnpike_client::now_ms();
    let a_id: i64 = a.rider_id.parse().unwrap();
    let b_id: i64 = b.rider_id.parse().unwrap();
    store
        .insert_wallet_signing("TPWA", a_id, now)
        .await
        .unwrap();
    store
        .insert_wallet_signing("TPWB", b_id, now)
        .await
        .unwrap();
    use gateway::store::wallets::{BindOutcome, SignedAgreement};
    let signed = |external| SignedAgreement {
        external_agreement_no: external,
        agreement_no: "20260000000000000001",
        provider_user_id: None,
    };
    assert_eq!(
        store
            .bind_signed_wallet(&signed("TPWA"), now)
            .await
            .unwrap(),
        BindOutcome::Bound { rider_id: a_id }
    );
    assert_eq!(
        store
            .bind_signed_wallet(&signed("TPWA"), now)
            .await
            .unwrap(),
        BindOutcome::AlreadyBound { rider_id: a_id }
    );
    assert_eq!(
        store
            .bind_signed_wallet(&signed("TPWB"), now)
            .await
            .unwrap(),
        BindOutcome::AgreementTaken { rider_id: a_id }
    );
    assert_eq!(
        store
            .bind_signed_wallet(&signed("TPWX"), now)
            .await
            .unwrap(),
        BindOutcome::UnknownSigning
    );
    assert_eq!(p.env.gw.count("rider_wallets").await, 1);

    // At the provider: C's signing link, signed by C's wallet, cannot be signed by D's.
    let c = p.env.gw.rider().await;
    let (c_user, d_user) = (
        p.sandbox.wallet(1_000, None).await,
        p.sandbox.wallet(1_000, None).await,
    );
    let signing = c
        .start_wallet_signing(&p.env.gw.public_base, &p.env.gw.ca())
        .await
        .unwrap();
    let (status, _) = p
        .sandbox
        .sign_in_wallet(&c_user, &signing.sign_url, 1_000)
        .await;
    assert_eq!(status, 201);
    let (status, again) = p
        .sandbox
        .sign_in_wallet(&c_user, &signing.sign_url, 1_000)
        .await;
    assert_eq!(status, 200, "the same buyer opening it again: {again}");
    let (status, body) = p
        .sandbox
        .sign_in_wallet(&d_user, &signing.sign_url, 1_000)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("USER_AGREEMENT_ALREADY_EXIST"))
    );
    let wallet = c
        .wallet(&p.env.gw.public_base, &p.env.gw.ca())
        .await
        .unwrap();
    assert_eq!(wallet.status, "bound");
}
on_both!(one_agreement_one_rider);

/// Proves the signing notification binds the wallet by itself (verified and cross-checked),
/// that a forged one writes nothing, and that the rider ending the agreement in the wallet
/// unbinds it (`dut_user_unsign`).
async fn notifications_bind_and_unbind(db: Db) {
    let Some(p) = PaidEnv::start_notified(db, |_| {}).await else {
        return;
    };
    let store = &p.env.gw.state.store;
    let rider = p.env.gw.rider().await;
    let rider_id: i64 = rider.rider_id.parse().unwrap();
    let user = p.sandbox.wallet(1_000, None).await;
    let signing = rider
        .start_wallet_signing(&p.env.gw.public_base, &p.env.gw.ca())
        .await
        .unwrap();

    // A forged sign notification for this rider's number, naming someone else's agreement.
    let mut forged = std::collections::BTreeMap::new();
    for (k, v) in [
        ("notify_type", "dut_user_sign"),
        ("notify_id", "forged1"),
        ("app_id", turnpike_tests::provider::APP_ID),
        ("agreement_no", "20269999999999999999"),
        (
            "external_agreement_no",
            signing.external_agreement_no.as_str(),
        ),
        ("status", "NORMAL"),
        ("sign_type", "RSA2"),
        ("sign", "Zm9yZ2Vk"),
    ] {
        forged.insert(k.to_string(), v.to_string());
    }
    let (status, body) = p.post_notify(form_body(&forged)).await;
    assert_eq!((status, body.as_str()), (400, "fail"));
    assert_eq!(p.env.gw.count("provider_notifications").await, 0);
    assert_eq!(p.env.gw.count("rider_wallets").await, 0);

    let (status, agreement) = p
        .sandbox
        .sign_in_wallet(&user, &signing.sign_url, 1_000)
        .await;
    assert_eq!(status, 201, "{agreement}");
    let agreement_no = agreement["agreement_no"].as_str().unwrap().to_string();
    // Bound by the notification alone: nobody looks at the wallet.
    assert!(
        p.eventually(10_000, || async {
            store.wallet(rider_id).await.unwrap().as_deref() == Some(agreement_no.as_str())
        })
        .await,
        "the dut_user_sign notification bound the wallet"
    );

    // The rider ends it in the wallet app: the gateway hears and unbinds.
    let (status, ended) = p
        .sandbox
        .admin_post(
            &format!("/sandbox/agreements/{agreement_no}/unsign"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{ended}");
    assert!(
        p.eventually(10_000, || async {
            store.wallet(rider_id).await.unwrap().is_none()
        })
        .await,
        "the dut_user_unsign notification unbound the wallet"
    );
}
on_both!(notifications_bind_and_unbind);

/// Proves unbinding ends the agreement at the provider and is refused while the rider owes.
async fn unbinding_ends_the_agreement(db: Db) {
    // No capture worker rounds for a while: the journey's charge stays pending.
    let Some(p) = PaidEnv::start(db, |c| c.charging.capture_poll_ms = 3_600_000).await else {
        return;
    };
    let rider = p.env.gw.rider().await;
    p.bind_wallet(&rider, 10_000, 10_000).await;
    let agreement = agreement_of(&p, &rider).await.unwrap();
    ride(&p, &rider, ("xianghu", "wulin-square"), 1).await;
    let owed = send(
        &p,
        reqwest::Method::DELETE,
        "/v1/riders/me/wallet",
        &rider.token,
        None,
    )
    .await;
    assert_eq!(
        (owed.status, owed.error_code().as_deref()),
        (409, Some("charges_outstanding"))
    );
    assert_eq!(
        p.sandbox
            .admin_get(&format!("/sandbox/agreements/{agreement}"))
            .await
            .1["status"],
        "NORMAL"
    );

    let other = p.env.gw.rider().await;
    p.bind_wallet(&other, 10_000, 10_000).await;
    let other_agreement = agreement_of(&p, &other).await.unwrap();
    let gone = send(
        &p,
        reqwest::Method::DELETE,
        "/v1/riders/me/wallet",
        &other.token,
        None,
    )
    .await;
    assert_eq!(gone.status, 204, "{}", String::from_utf8_lossy(&gone.body));
    let (_, at_provider) = p
        .sandbox
        .admin_get(&format!("/sandbox/agreements/{other_agreement}"))
        .await;
    assert_eq!(at_provider["status"], "UNSIGN");
    let view = other
        .wallet(&p.env.gw.public_base, &p.env.gw.ca())
        .await
        .unwrap();
    assert_eq!(view.status, "unbound", "{view:?}");
    let again = send(
        &p,
        reqwest::Method::DELETE,
        "/v1/riders/me/wallet",
        &other.token,
        None,
    )
    .await;
    assert_eq!(again.status, 404);
}
on_both!(unbinding_ends_the_agreement);
